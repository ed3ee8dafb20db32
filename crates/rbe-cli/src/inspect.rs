//! `rbe inspect`: per-tensor shapes, stored bytes, bits per weight, settings and the error the
//! encoder recorded, as a human table or as one JSON object (`--json`). Reads only the container
//! header and metadata: no block is decoded.

use crate::verify::{file_len, one_line, open_rbe};
use rbe_format::{Entry, RbeFile, TensorDesc};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Runs `rbe inspect FILE [--json]`.
pub fn run(args: &crate::InspectArgs) -> anyhow::Result<()> {
    let file = open_rbe(&args.input)?;
    let file_bytes = file_len(&args.input)?;
    let report = Report::new(&file, file_bytes);
    if args.json {
        println!("{}", report.to_json(&args.input.display().to_string()));
    } else {
        print!("{}", report.table(&one_line(&args.input.display().to_string())));
    }
    Ok(())
}

/// One tensor's line of the report.
struct TensorRow<'a> {
    name: &'a str,
    shape: Vec<u64>,
    /// Element count; `None` when the shape overflows.
    elements: Option<u64>,
    /// Stored bytes: the stream of a compressed tensor, the data of a verbatim one.
    bytes: u64,
    kind: RowKind<'a>,
}

enum RowKind<'a> {
    Compressed(&'a TensorDesc),
    Verbatim { dtype: &'a str },
}

impl TensorRow<'_> {
    fn bpw(&self) -> Option<f64> {
        bits_per_weight(self.bytes, self.elements)
    }
}

/// The whole report: rows and file-level totals.
struct Report<'a> {
    file_bytes: u64,
    rows: Vec<TensorRow<'a>>,
}

fn bits_per_weight(bytes: u64, elements: Option<u64>) -> Option<f64> {
    elements.filter(|&n| n > 0).map(|n| bytes as f64 * 8.0 / n as f64)
}

fn element_count(shape: impl IntoIterator<Item = u64>) -> Option<u64> {
    shape.into_iter().try_fold(1u64, |acc, d| acc.checked_mul(d))
}

impl<'a> Report<'a> {
    fn new(file: &'a RbeFile, file_bytes: u64) -> Self {
        let rows = file
            .entries()
            .iter()
            .map(|(name, entry)| match entry {
                Entry::Compressed { desc, stream } => TensorRow {
                    name,
                    shape: desc.shape.clone(),
                    elements: element_count(desc.shape.iter().copied()),
                    bytes: stream.len() as u64,
                    kind: RowKind::Compressed(desc),
                },
                Entry::Verbatim(v) => {
                    let shape: Vec<u64> = v.shape.iter().map(|&d| d as u64).collect();
                    TensorRow {
                        name,
                        elements: element_count(shape.iter().copied()),
                        shape,
                        bytes: v.data.len() as u64,
                        kind: RowKind::Verbatim { dtype: &v.dtype },
                    }
                }
            })
            .collect();
        Report { file_bytes, rows }
    }

    /// Weights of the compressed tensors.
    fn compressed_weights(&self) -> u64 {
        self.rows
            .iter()
            .filter(|r| matches!(r.kind, RowKind::Compressed(_)))
            .map(|r| r.elements.unwrap_or(0))
            .fold(0u64, u64::saturating_add)
    }

    fn verbatim_rows(&self) -> impl Iterator<Item = &TensorRow<'a>> {
        self.rows.iter().filter(|r| matches!(r.kind, RowKind::Verbatim { .. }))
    }

    /// File bytes minus the verbatim tensors' data: what the compressed weights cost, headers
    /// and metadata included.
    fn compressed_cost_bytes(&self) -> u64 {
        let verbatim: u64 = self.verbatim_rows().map(|r| r.bytes).sum();
        self.file_bytes.saturating_sub(verbatim)
    }

    fn to_json(&self, file_name: &str) -> Value {
        let tensors: Vec<Value> = self.rows.iter().map(row_json).collect();
        let weights = self.compressed_weights();
        let bytes = self.compressed_cost_bytes();
        json!({
            "file": file_name,
            "file_bytes": self.file_bytes,
            "tensors": tensors,
            "totals": {
                "weights": weights,
                "bytes": bytes,
                "bpw": bits_per_weight(bytes, Some(weights)),
                "tensors": self.rows.len(),
                "compressed": self.rows.len() - self.verbatim_rows().count(),
                "verbatim": self.verbatim_rows().count(),
                "verbatim_bytes": self.verbatim_rows().map(|r| r.bytes).sum::<u64>(),
                "verbatim_weights": self.verbatim_rows().map(|r| r.elements.unwrap_or(0)).fold(0u64, u64::saturating_add),
            },
        })
    }

    fn table(&self, file_name: &str) -> String {
        const HEADERS: [&str; 17] = [
            "tensor",
            "shape",
            "stored",
            "bytes",
            "bpw",
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
        ];
        // Numeric columns are right-aligned.
        const RIGHT: [bool; 17] = [
            false, false, false, true, true, true, false, false, false, false, false, false, true, true, true, true,
            true,
        ];
        let cells: Vec<Vec<String>> = self.rows.iter().map(row_cells).collect();
        let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = HEADERS.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&cells) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if RIGHT[i] {
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
        let weights = self.compressed_weights();
        let bytes = self.compressed_cost_bytes();
        let verbatim = self.verbatim_rows().count();
        let _ = writeln!(
            out,
            "\n{file_name}: {} bytes, {} tensors ({} compressed, {verbatim} verbatim)",
            self.file_bytes,
            self.rows.len(),
            self.rows.len() - verbatim,
        );
        let _ = writeln!(
            out,
            "compressed: {weights} weights in {bytes} bytes (file minus verbatim data) = {} bits per weight",
            fmt_opt(bits_per_weight(bytes, Some(weights)), |v| format!("{v:.3}")),
        );
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

fn row_cells(row: &TensorRow<'_>) -> Vec<String> {
    let mut cells = vec![
        one_line(row.name),
        shape_text(&row.shape),
        String::new(),
        row.bytes.to_string(),
        fmt_opt(row.bpw(), |v| format!("{v:.3}")),
    ];
    match row.kind {
        RowKind::Compressed(d) => {
            cells[2] = "rbe".to_owned();
            cells.extend([
                d.block.to_string(),
                d.transform.to_string(),
                d.layout.to_string(),
                d.values.to_string(),
                d.params.to_string(),
                d.entropy.to_string(),
                d.profile.as_deref().map(one_line).unwrap_or_else(|| "-".to_owned()),
                d.cache_blocks.to_string(),
                format!("{:.3e}", d.rmse),
                format!("{:.4}", d.rel_rmse),
                format!("{:.1}", d.k_mean),
                format!("{}/{}", d.sparse, d.dense),
            ]);
        }
        RowKind::Verbatim { dtype } => {
            cells[2] = format!("verbatim {}", one_line(dtype));
            cells.extend(std::iter::repeat_n("-".to_owned(), 12));
        }
    }
    cells
}

fn row_json(row: &TensorRow<'_>) -> Value {
    let mut v = json!({
        "name": row.name,
        "shape": row.shape,
        "compressed": matches!(row.kind, RowKind::Compressed(_)),
        "stream_bytes": row.bytes,
        "bpw": row.bpw(),
    });
    let fields = match row.kind {
        RowKind::Compressed(d) => json!({
            "dtype": d.dtype,
            "rmse": d.rmse,
            "rel_rmse": d.rel_rmse,
            "std": d.std,
            "k_mean": d.k_mean,
            "blocks_sparse": d.sparse,
            "blocks_dense": d.dense,
            "block": d.block,
            "transform": d.transform,
            "layout": d.layout,
            "values": d.values,
            "params": d.params,
            "entropy": d.entropy,
            "profile": d.profile,
            "cache_blocks": d.cache_blocks,
            "xxh3": d.xxh3,
        }),
        RowKind::Verbatim { dtype } => json!({
            "dtype": dtype,
            "rmse": null,
            "rel_rmse": null,
            "std": null,
            "k_mean": null,
            "blocks_sparse": null,
            "blocks_dense": null,
            "block": null,
            "transform": null,
            "layout": null,
            "values": null,
            "params": null,
            "entropy": null,
            "profile": null,
            "cache_blocks": null,
            "xxh3": null,
        }),
    };
    if let (Value::Object(dst), Value::Object(src)) = (&mut v, fields) {
        dst.extend(src);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_weight_handles_empty_and_overflowing_shapes() {
        assert_eq!(bits_per_weight(8, Some(16)), Some(4.0));
        assert_eq!(bits_per_weight(8, Some(0)), None);
        assert_eq!(bits_per_weight(8, None), None);
        assert_eq!(element_count([u64::MAX, 2]), None);
        assert_eq!(element_count([]), Some(1));
        assert_eq!(shape_text(&[4, 5]), "4x5");
    }
}
