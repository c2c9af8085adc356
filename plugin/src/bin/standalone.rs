//! Wren as a standalone application: JACK, ALSA or a dummy backend instead of
//! a plugin host. `--help` lists the options (backend, sample rate, buffer
//! size, devices, MIDI ports, tempo); `--state FILE` starts from a saved
//! state. Without an audio device it says so plainly and runs silent.

use std::process::ExitCode;

use wren::standalone;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (choice, state_file, other) = standalone::parse_args(&args);
    let asks_for_help = other
        .iter()
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "-V" | "--version"));
    if !asks_for_help {
        let setup = standalone::survey(choice.clone(), other.clone());
        if let Some(problem) = setup.problem() {
            eprintln!("Wren: {problem}");
        }
        standalone::publish(setup);
    }
    if let Some(path) = state_file {
        match standalone::read_state(&path) {
            Ok(state) => standalone::set_start_state(state),
            Err(error) => {
                eprintln!("Wren: the saved state could not be read, starting fresh: {error}")
            }
        }
    }
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "wren-standalone".into());
    let wrapper_args = std::iter::once(program).chain(standalone::wrapper_args(&choice, &other));
    if nice_plug::prelude::nice_export_standalone_with_args::<wren::plugin::Wren, _>(wrapper_args) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
