//! `rbe inspect`: per-tensor shapes, stored bytes, bits per weight, settings and the error the
//! encoder recorded, as a human table or as one JSON object (`--json`, [`rbe::ModelReport`]).
//! Reads only the container header and metadata: no block is decoded. The default table fits 100
//! columns (the longest names lose their middle to an ellipsis); `--wide` prints every field.
//!
//! `--resident` also builds each compressed tensor's direct-mode layer (the form `rbe::Layer`
//! multiplies from) and prints its resident size, `res_bpw = 8 * resident bytes / weights`
//! (weights and block descriptors), beside the file's bpw. That costs about what `rbe verify` does
//! (every block is read), so it is asked for; in `--json` the per-tensor `resident_bytes` and
//! `resident_bits_per_weight` are null without it and for verbatim tensors.

use crate::verify::{cli_error, one_line, open_model, shorten};
use rayon::prelude::*;
use rbe::{Backend, Layer, Mode, Model, ModelReport, TensorReport};
use std::fmt::Write as _;

/// Runs `rbe inspect FILE [--json|--wide] [--resident]`.
pub fn run(args: &crate::InspectArgs) -> anyhow::Result<()> {
    let model = open_model(&args.input)?;
    let report = model.report();
    let resident = if args.resident { Some(resident_bytes(&model, &report)?) } else { None };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(record), Some(obj)) = (model.calibration(), v.as_object_mut()) {
            obj.insert("calibration".into(), serde_json::to_value(record)?);
        }
        if let Some(tensors) = v.get_mut("tensors").and_then(|t| t.as_array_mut()) {
            for (i, t) in tensors.iter_mut().enumerate() {
                let (bytes, bpw) = match resident.as_ref().and_then(|r| r[i]) {
                    Some(b) => (Some(b), resident_bpw(&report.tensors[i], b)),
                    None => (None, None),
                };
                if let Some(obj) = t.as_object_mut() {
                    obj.insert("resident_bytes".into(), serde_json::json!(bytes));
                    obj.insert("resident_bits_per_weight".into(), serde_json::json!(bpw));
                }
            }
        }
        println!("{}", serde_json::to_string(&v)?);
    } else {
        let columns = if args.wide { Columns::Wide } else { Columns::Narrow(NARROW_WIDTH) };
        let calibration = model.calibration().map(|r| r.xxh3);
        let table = Table { report: &report, resident: resident.as_deref(), calibration };
        print!("{}", table.render(&one_line(&args.input.display().to_string()), columns));
    }
    Ok(())
}

/// Resident bytes of each compressed tensor's direct-mode CPU layer (weights and block
/// descriptors), in report order; `None` for verbatim tensors. Tensors are built in parallel.
fn resident_bytes(model: &Model, report: &ModelReport) -> anyhow::Result<Vec<Option<u64>>> {
    report
        .tensors
        .par_iter()
        .map(|t| {
            if !t.compressed {
                return Ok(None);
            }
            let tensor = model.tensor(&t.name).map_err(cli_error)?;
            let layer = Layer::with_mode(&tensor, None, Backend::Cpu, Mode::DctDirect)
                .map_err(|e| cli_error(rbe::Error::from(e)))?;
            Ok(Some(layer.resident_bytes() as u64))
        })
        .collect()
}

/// `8 * resident / weights` of a tensor.
fn resident_bpw(t: &TensorReport, resident: u64) -> Option<f64> {
    t.elements().and_then(|n| rbe::report::bits_per_weight(resident, n))
}

/// The human-readable form of a report.
struct Table<'a> {
    report: &'a ModelReport,
    /// Resident bytes per tensor (`--resident`), in report order.
    resident: Option<&'a [Option<u64>]>,
    /// The checksum of the calibration a calibrated encode used.
    calibration: Option<String>,
}

/// Columns of the default table.
const NARROW_WIDTH: usize = 100;

/// The fields of the default table (indices into `HEADERS`): name, shape, how it is stored,
/// bytes, bits per weight, resident bits per weight (with `--resident`), relative RMSE, relative
/// output error (calibrated files).
const NARROW: [usize; 8] = [0, 1, 2, 3, 4, 5, 15, 18];

/// Index of the relative output error column, dropped unless the file was calibrated.
const OUTPUT_COLUMN: usize = 18;

/// Index of the resident bits-per-weight column, dropped without `--resident`.
const RESIDENT_COLUMN: usize = 5;

/// Which table.
#[derive(Clone, Copy)]
enum Columns {
    /// Every field, names in full.
    Wide,
    /// [`NARROW`], names shortened so a line fits this many columns.
    Narrow(usize),
}

impl Table<'_> {
    fn render(&self, file_name: &str, columns: Columns) -> String {
        const HEADERS: [&str; 19] = [
            "tensor",
            "shape",
            "stored",
            "bytes",
            "bpw",
            "res_bpw",
            "block",
            "xform",
            "layout",
            "values",
            "params",
            "entropy",
            "profile",
            "cache",
            "rmse",
            "rel_rmse",
            "k_mean",
            "sparse/dense",
            "out_rel",
        ];
        // Numeric columns are right-aligned.
        const RIGHT: [bool; 19] = [
            false, false, false, true, true, true, true, false, false, false, false, false, false, true, true, true,
            true, true, true,
        ];
        let mut keep: Vec<usize> = match columns {
            Columns::Wide => (0..HEADERS.len()).collect(),
            Columns::Narrow(_) => NARROW.to_vec(),
        };
        if self.resident.is_none() {
            keep.retain(|&i| i != RESIDENT_COLUMN);
        }
        if self.report.tensors.iter().all(|t| t.output_rel_rmse.is_none()) {
            keep.retain(|&i| i != OUTPUT_COLUMN);
        }
        let pick = |row: Vec<String>| -> Vec<String> { keep.iter().map(|&i| row[i].clone()).collect() };
        let header: Vec<String> = pick(HEADERS.iter().map(|h| (*h).to_owned()).collect());
        let right: Vec<bool> = keep.iter().map(|&i| RIGHT[i]).collect();
        let mut cells: Vec<Vec<String>> = (self.report.tensors.iter().enumerate())
            .map(|(i, t)| {
                let resident = self.resident.and_then(|r| r[i]).and_then(|b| resident_bpw(t, b));
                pick(row_cells(t, resident))
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        if let Columns::Narrow(total) = columns {
            // The name column (first) gets what the others and the two-space gaps leave.
            let others: usize = widths[1..].iter().map(|w| w + 2).sum();
            let name_width = total.saturating_sub(others).max(header[0].len());
            if widths[0] > name_width {
                widths[0] = name_width;
                for row in &mut cells {
                    row[0] = shorten(&row[0], name_width);
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&cells) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let t = &self.report.totals;
        let _ = writeln!(
            out,
            "\n{file_name}: {} bytes, {} tensors ({} compressed, {} verbatim)",
            self.report.file_bytes, t.tensors, t.compressed, t.verbatim,
        );
        let _ = writeln!(
            out,
            "compressed: {} weights in {} bytes (file minus verbatim data) = {} bits per weight",
            t.weights,
            t.bytes,
            fmt_opt(t.bits_per_weight, |v| format!("{v:.3}")),
        );
        if let Some(r) = self.resident {
            let bytes: u64 = r.iter().flatten().sum();
            let _ = writeln!(
                out,
                "resident: {} bytes for those weights = {} bits per weight",
                bytes,
                fmt_opt(rbe::report::bits_per_weight(bytes, t.weights), |v| format!("{v:.3}")),
            );
        }
        out.push_str("per tensor: bpw = 8 x (stored bytes + its header entries) / weights\n");
        if self.resident.is_some() {
            out.push_str("res_bpw = 8 x (the direct-mode layer's resident weights + descriptors) / weights\n");
        }
        if let Some(hash) = &self.calibration {
            let _ =
                writeln!(out, "calibration {hash}: out_rel = relative output error on its inputs (rbe.calibration)");
        }
        out
    }
}

fn fmt_opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".to_owned())
}

fn shape_text(shape: &[u64]) -> String {
    if shape.is_empty() {
        return "scalar".to_owned();
    }
    shape.iter().map(u64::to_string).collect::<Vec<_>>().join("x")
}

fn row_cells(row: &TensorReport, resident_bpw: Option<f64>) -> Vec<String> {
    let opt = |v: &Option<String>| v.as_deref().map(one_line).unwrap_or_else(|| "-".to_owned());
    let mut cells = vec![
        one_line(&row.name),
        shape_text(&row.shape),
        if row.compressed { "rbe".to_owned() } else { format!("verbatim {}", one_line(&row.dtype)) },
        row.stream_bytes.to_string(),
        fmt_opt(row.bits_per_weight, |v| format!("{v:.3}")),
        fmt_opt(resident_bpw, |v| format!("{v:.3}")),
    ];
    if row.compressed {
        cells.extend([
            fmt_opt(row.block, |v| v.to_string()),
            opt(&row.transform),
            opt(&row.layout),
            opt(&row.values),
            opt(&row.params),
            opt(&row.entropy),
            opt(&row.profile),
            fmt_opt(row.cache_blocks, |v| v.to_string()),
            fmt_opt(row.rmse, |v| format!("{v:.3e}")),
            fmt_opt(row.rel_rmse, |v| format!("{v:.4}")),
            fmt_opt(row.k_mean, |v| format!("{v:.1}")),
            format!("{}/{}", row.blocks_sparse.unwrap_or(0), row.blocks_dense.unwrap_or(0)),
            fmt_opt(row.output_rel_rmse, |v| format!("{v:.4}")),
        ]);
    } else {
        cells.extend(std::iter::repeat_n("-".to_owned(), 13));
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_print_as_products() {
        assert_eq!(shape_text(&[4, 5]), "4x5");
        assert_eq!(rbe::report::bits_per_weight(8, 16), Some(4.0));
        assert_eq!(rbe::report::bits_per_weight(8, 0), None);
        assert_eq!(rbe::report::element_count(&[u64::MAX, 2]), None);
        assert_eq!(rbe::report::element_count(&[]), Some(1));
        assert_eq!(shape_text(&[]), "scalar");
    }
}
