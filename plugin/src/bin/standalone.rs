//! Wren as a standalone application: JACK, ALSA or a dummy backend instead of
//! a plugin host. `--help` lists the options (backend, sample rate, tempo).

use std::process::ExitCode;

fn main() -> ExitCode {
    if nice_plug::nice_export_standalone::<wren::plugin::Wren>() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
