//! The progress bar of `encode`, `decode` and `analyze`: shown only on a terminal, sized to its
//! width, the current tensor's name shortened with an ellipsis so the line never wraps.

use crate::verify::{one_line, shorten};
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// What the bar counts.
#[derive(Clone, Copy)]
pub enum Unit {
    /// Weights (`1,234/5,678 weights`).
    Weights,
    /// Bytes of the stored model (`1.2 MiB/3.4 MiB`).
    Bytes,
}

/// A progress bar on stderr, or nothing when stderr is not a terminal (or `hidden`).
pub struct Progress {
    bar: Option<(ProgressBar, usize)>,
}

/// Width assumed when the terminal does not say.
const DEFAULT_WIDTH: usize = 80;

impl Progress {
    /// A bar counting to `total`, unless `hidden` or stderr is not a terminal.
    pub fn new(total: u64, unit: Unit, hidden: bool) -> Self {
        if hidden || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let layout = Layout::new(total, unit, terminal_width().unwrap_or(DEFAULT_WIDTH));
        let bar = ProgressBar::new(total);
        // The template is built from fixed pieces above; a mistake there is a bug, not bad input.
        bar.set_style(ProgressStyle::with_template(&layout.template).expect("valid progress template"));
        Progress { bar: Some((bar, layout.name_width)) }
    }

    /// Moves the bar to `position` and names what is being worked on.
    pub fn set(&self, name: &str, position: u64) {
        if let Some((bar, width)) = &self.bar {
            bar.set_message(shorten(&one_line(name), *width));
            bar.set_position(position);
        }
    }

    /// Names what is being worked on, the position unchanged.
    pub fn name(&self, name: &str) {
        if let Some((bar, width)) = &self.bar {
            bar.set_message(shorten(&one_line(name), *width));
        }
    }

    /// Advances the bar by `n`.
    pub fn inc(&self, n: u64) {
        if let Some((bar, _)) = &self.bar {
            bar.inc(n);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some((bar, _)) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    /// A run that fails part-way leaves no half-drawn bar before its error line.
    fn drop(&mut self) {
        self.finish();
    }
}

/// A template whose every piece has a known width, and the columns left for the name.
struct Layout {
    template: String,
    /// Columns every piece but the name takes (the bar included), for the tests' width check.
    #[cfg(test)]
    fixed: usize,
    name_width: usize,
}

/// Columns of `{eta}` (indicatif's compact duration: `7s`, `12m`, `3h`).
const ETA: usize = 4;

impl Layout {
    fn new(total: u64, unit: Unit, width: usize) -> Self {
        // One column spare: a line that fills the last column wraps on some terminals.
        let width = width.max(20) - 1;
        let (count, count_width) = match unit {
            Unit::Weights => {
                let n = HumanCount(total).to_string().len();
                (format!("{{human_pos:>{n}}}/{{human_len}} weights"), 2 * n + 9)
            }
            Unit::Bytes => {
                // HumanBytes prints at most `1023.99 GiB` (11 columns).
                let n = HumanBytes(total).to_string().len().max(11);
                (format!("{{bytes:>{n}}}/{{total_bytes:{n}}}"), 2 * n + 1)
            }
        };
        // Pieces by priority: the elapsed time and the counts go first on narrow terminals; the
        // spinner, the bar, the percentage and the ETA always stay.
        let eta = format!(" ETA {{eta:>{ETA}}}");
        let core = 2 + 1 + 5 + ETA + 5; // "{spinner} ", " ", "100% ", " ETA ", eta
        let with_count = core + count_width + 1;
        let with_elapsed = with_count + 11; // "[00:00:00] "
        let (head, middle, fixed) = if width >= with_elapsed + 40 {
            ("{spinner} [{elapsed_precise}] ", format!("{{percent:>3}}% {count}{eta}"), with_elapsed)
        } else if width >= with_count + 30 {
            ("{spinner} ", format!("{{percent:>3}}% {count}{eta}"), with_count)
        } else {
            ("{spinner} ", format!("{{percent:>3}}%{eta}"), core)
        };
        // The bar takes a third of what is left (10 to 40 columns), the name the rest.
        let left = width.saturating_sub(fixed);
        let bar = (left / 3).clamp(10, 40);
        let name_width = left.saturating_sub(bar + 1);
        let template = format!("{head}{{bar:{bar}}} {middle} {{msg}}");
        Layout {
            template,
            #[cfg(test)]
            fixed: fixed + bar + 1,
            name_width,
        }
    }
}

/// Columns of the terminal stderr is connected to, if it says.
fn terminal_width() -> Option<usize> {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ fills the zeroed winsize it is given; fd 2 is only queried.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut size) } == 0;
        if ok && size.ws_col > 0 {
            return Some(usize::from(size.ws_col));
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&c| c > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_fits_the_terminal_and_the_name_takes_the_rest() {
        for unit in [Unit::Weights, Unit::Bytes] {
            for total in [1, 22_713_216, u64::MAX] {
                for width in [40, 60, 80, 100, 132, 300] {
                    let l = Layout::new(total, unit, width);
                    assert!(l.fixed + l.name_width < width, "{width} columns: {}", l.template);
                    assert!(ProgressStyle::with_template(&l.template).is_ok(), "{}", l.template);
                    if width >= 80 {
                        assert!(l.name_width >= 12, "{width} columns leave a name {} columns", l.name_width);
                    }
                }
            }
        }
        let narrow = Layout::new(22_713_216, Unit::Weights, 80);
        assert!(narrow.template.contains("weights") && !narrow.template.contains("elapsed"), "{}", narrow.template);
        assert!(Layout::new(22_713_216, Unit::Weights, 160).template.contains("elapsed"));
    }
}
