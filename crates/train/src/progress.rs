//! The progress bar every long stage shows on a terminal (hidden when stderr is not one).

use indicatif::{ProgressBar, ProgressStyle};

pub fn progress_bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{per_sec}, ETA {eta}]") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar
}
