//! The standalone application's audio set-up: what it was started with,
//! the devices this machine has, a plain message when it has none, and a
//! restart with other settings chosen in the editor.
//!
//! The flags are nice-plug's standalone flags (`--backend`, `--sample-rate`,
//! `--period-size`, `--output-device`, `--midi-input`, ...), which
//! `wren-standalone --help` lists; Wren adds `--state FILE`, a saved state
//! to start from, which a restart uses to keep every setting.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nice_plug::prelude::PluginState;
use parking_lot::Mutex;

/// Buffer sizes the editor offers.
pub const PERIOD_SIZES: [u32; 7] = [64, 128, 256, 512, 1024, 2048, 4096];
/// Sample rates the editor offers.
pub const SAMPLE_RATES: [u32; 4] = [44_100, 48_000, 88_200, 96_000];
/// Backends the editor offers.
pub const BACKENDS: [&str; 4] = ["auto", "jack", "alsa", "dummy"];

/// The audio settings the application runs with (or is to restart with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioChoice {
    /// `auto`, `jack`, `alsa` or `dummy`.
    pub backend: String,
    /// Samples per second (ignored by JACK, which has its own).
    pub sample_rate: u32,
    /// Samples per buffer (ignored by JACK).
    pub period_size: u32,
    /// The ALSA output device; the default device when `None`.
    pub output_device: Option<String>,
    /// The MIDI input port; none when `None`.
    pub midi_input: Option<String>,
}

impl Default for AudioChoice {
    /// nice-plug's defaults: auto, 48 kHz, 512 samples.
    fn default() -> Self {
        AudioChoice {
            backend: "auto".into(),
            sample_rate: 48_000,
            period_size: 512,
            output_device: None,
            midi_input: None,
        }
    }
}

/// What the application was started with and what the machine has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AudioSetup {
    /// The settings asked for.
    pub choice: AudioChoice,
    /// The other flags, passed on unchanged at a restart.
    pub other_args: Vec<String>,
    /// ALSA output devices.
    pub outputs: Vec<String>,
    /// MIDI input ports.
    pub midi_inputs: Vec<String>,
    /// Whether a JACK server runs.
    pub jack_server: bool,
    /// Whether the machine has a sound card.
    pub sound_card: bool,
}

impl AudioSetup {
    /// What is wrong with the set-up, in words for the user, if anything.
    pub fn problem(&self) -> Option<String> {
        let backend = self.choice.backend.as_str();
        let no_device = !self.sound_card && !self.jack_server;
        match backend {
            "alsa" if !self.sound_card => Some(
                "ALSA sees no sound card, so the alsa backend cannot start. Connect an audio \
                 interface, or start Wren with --backend dummy (silent: the editor and MIDI \
                 export work) or --backend jack with a JACK server running."
                    .into(),
            ),
            "auto" if no_device => Some(
                "No audio device found: no JACK server runs and ALSA sees no sound card. \
                 Wren runs on the dummy backend: the editor and MIDI export work, you hear \
                 nothing. Connect an audio interface or start JACK (`jackd -d alsa`), then \
                 restart Wren or choose a backend below."
                    .into(),
            ),
            "jack" if !self.jack_server => Some(
                "No JACK server runs: start one (`jackd -d alsa`), or choose the alsa backend."
                    .into(),
            ),
            "dummy" => Some(
                "The dummy backend plays to no device: you hear nothing. Choose jack or alsa to \
                 hear Wren."
                    .into(),
            ),
            _ => None,
        }
    }

    /// Why the application could not start with `choice` on this machine,
    /// if it could not: restarting into it would end Wren.
    pub fn refusal(&self, choice: &AudioChoice) -> Option<String> {
        match choice.backend.as_str() {
            "jack" if !self.jack_server => {
                return Some(
                    "No JACK server runs: start one (`jackd -d alsa`) before choosing jack.".into(),
                )
            }
            "alsa" if !self.sound_card => {
                return Some("ALSA sees no sound card: the alsa backend cannot start.".into())
            }
            _ => {}
        }
        if let Some(device) = &choice.output_device {
            if choice.backend != "dummy" && !self.outputs.contains(device) {
                return Some(format!("There is no output {device:?} now."));
            }
        }
        if let Some(port) = &choice.midi_input {
            if !self.midi_inputs.contains(port) {
                return Some(format!("There is no MIDI input {port:?} now."));
            }
        }
        None
    }
}

static SETUP: OnceLock<AudioSetup> = OnceLock::new();
static START_STATE: Mutex<Option<PluginState>> = Mutex::new(None);

/// Makes the set-up known to the editor. The first call wins.
pub fn publish(setup: AudioSetup) {
    let _ = SETUP.set(setup);
}

/// The set-up, when Wren runs as the standalone application.
pub fn setup() -> Option<&'static AudioSetup> {
    SETUP.get()
}

/// Keeps a state for the editor to load when it first opens.
pub fn set_start_state(state: PluginState) {
    *START_STATE.lock() = Some(state);
}

/// The state to start from, once.
pub fn take_start_state() -> Option<PluginState> {
    START_STATE.lock().take()
}

/// The flag's value in `--flag value` or `--flag=value` form at `args[i]`,
/// and how many arguments it took.
fn flag_value(args: &[String], i: usize, names: &[&str]) -> Option<(String, usize)> {
    let arg = &args[i];
    for name in names {
        if arg == name {
            return args.get(i + 1).map(|v| (v.clone(), 2));
        }
        if let Some(value) = arg.strip_prefix(&format!("{name}=")) {
            return Some((value.to_string(), 1));
        }
    }
    None
}

/// Splits the command line (without the program name) into the audio
/// settings, the state file and the other flags.
pub fn parse_args(args: &[String]) -> (AudioChoice, Option<PathBuf>, Vec<String>) {
    let mut choice = AudioChoice::default();
    let (mut state, mut other) = (None, Vec::new());
    let mut i = 0;
    while i < args.len() {
        let value = |names: &[&str]| flag_value(args, i, names);
        if let Some((v, n)) = value(&["--backend", "-b"]) {
            choice.backend = v;
            i += n;
        } else if let Some((v, n)) = value(&["--sample-rate", "-r"]) {
            choice.sample_rate = v.parse().unwrap_or(choice.sample_rate);
            i += n;
        } else if let Some((v, n)) = value(&["--period-size", "-p"]) {
            choice.period_size = v.parse().unwrap_or(choice.period_size);
            i += n;
        } else if let Some((v, n)) = value(&["--output-device"]) {
            choice.output_device = Some(v);
            i += n;
        } else if let Some((v, n)) = value(&["--midi-input"]) {
            choice.midi_input = Some(v);
            i += n;
        } else if let Some((v, n)) = value(&["--state"]) {
            state = Some(PathBuf::from(v));
            i += n;
        } else {
            other.push(args[i].clone());
            i += 1;
        }
    }
    (choice, state, other)
}

/// The command line (without the program name) for nice-plug: the
/// settings as flags, then the other flags.
pub fn wrapper_args(choice: &AudioChoice, other: &[String]) -> Vec<String> {
    let mut args = vec![
        "--backend".to_string(),
        choice.backend.clone(),
        "--sample-rate".to_string(),
        choice.sample_rate.to_string(),
        "--period-size".to_string(),
        choice.period_size.to_string(),
    ];
    if let Some(device) = &choice.output_device {
        args.extend(["--output-device".to_string(), device.clone()]);
    }
    if let Some(port) = &choice.midi_input {
        args.extend(["--midi-input".to_string(), port.clone()]);
    }
    args.extend(other.iter().cloned());
    args
}

/// Reads a state saved by [`restart`].
pub fn read_state(path: &Path) -> Result<PluginState, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Starts the application again with `choice` and the current `state`,
/// then ends this process. Returns only when the new one could not start.
pub fn restart(choice: &AudioChoice, state: &PluginState) -> Result<(), String> {
    let setup = setup().ok_or("not the standalone application")?;
    if let Some(why) = setup.refusal(choice) {
        return Err(why);
    }
    let json = serde_json::to_string(state).map_err(|e| e.to_string())?;
    let path = std::env::temp_dir().join(format!("wren-restart-{}.json", std::process::id()));
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    let program = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args = wrapper_args(choice, &setup.other_args);
    args.extend(["--state".to_string(), path.display().to_string()]);
    std::process::Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| format!("could not start Wren again: {e}"))?;
    std::process::exit(0);
}

/// Looks at the machine: ALSA outputs, MIDI inputs, a JACK server, a
/// sound card. Takes a moment; call before starting audio.
#[cfg(feature = "standalone")]
pub fn survey(choice: AudioChoice, other_args: Vec<String>) -> AudioSetup {
    use cpal::traits::{DeviceTrait, HostTrait};
    let outputs = cpal::host_from_id(cpal::HostId::Alsa)
        .ok()
        .and_then(|host| host.output_devices().ok())
        .map(|devices| {
            devices
                .filter_map(|d| d.description().ok().map(|d| d.name().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let midi_inputs = midir::MidiInput::new("Wren survey")
        .map(|input| {
            input
                .ports()
                .iter()
                .filter_map(|port| input.port_name(port).ok())
                .collect()
        })
        .unwrap_or_default();
    let jack_server =
        jack::Client::new("wren-survey", jack::ClientOptions::NO_START_SERVER).is_ok();
    let sound_card = std::fs::read_to_string("/proc/asound/cards")
        .is_ok_and(|cards| !cards.contains("no soundcards") && !cards.trim().is_empty());
    AudioSetup {
        choice,
        other_args,
        outputs,
        midi_inputs,
        jack_server,
        sound_card,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_are_read_in_both_forms_and_the_rest_passes_through() {
        let (choice, state, other) = parse_args(&strings(&[
            "-b",
            "alsa",
            "--sample-rate=44100",
            "--period-size",
            "128",
            "--output-device",
            "hw:1,0",
            "--midi-input=Keystation",
            "--tempo",
            "90",
            "--state",
            "/tmp/s.json",
        ]));
        assert_eq!(
            choice,
            AudioChoice {
                backend: "alsa".into(),
                sample_rate: 44_100,
                period_size: 128,
                output_device: Some("hw:1,0".into()),
                midi_input: Some("Keystation".into()),
            }
        );
        assert_eq!(state, Some(PathBuf::from("/tmp/s.json")));
        assert_eq!(other, strings(&["--tempo", "90"]));
        let args = wrapper_args(&choice, &other);
        let (again, no_state, other_again) = parse_args(&args);
        assert_eq!((again, no_state, other_again), (choice, None, other));
        let (defaults, _, _) = parse_args(&[]);
        assert_eq!(defaults, AudioChoice::default());
        let (bad, _, _) = parse_args(&strings(&["--period-size", "lots"]));
        assert_eq!(bad.period_size, 512);
    }

    #[test]
    fn a_machine_without_a_device_gets_a_plain_message() {
        let mut setup = AudioSetup::default();
        assert!(setup
            .problem()
            .unwrap()
            .starts_with("No audio device found"));
        setup.jack_server = true;
        assert_eq!(setup.problem(), None);
        setup.choice.backend = "dummy".into();
        assert!(setup.problem().unwrap().contains("you hear nothing"));
        setup.choice.backend = "jack".into();
        assert_eq!(setup.problem(), None);
        setup.jack_server = false;
        setup.sound_card = true;
        assert!(setup.problem().unwrap().starts_with("No JACK server"));
        setup.choice.backend = "alsa".into();
        assert_eq!(setup.problem(), None);
        setup.sound_card = false;
        assert!(setup
            .problem()
            .unwrap()
            .contains("alsa backend cannot start"));
    }

    #[test]
    fn a_restart_into_a_backend_or_device_that_is_not_there_is_refused() {
        let setup = AudioSetup {
            outputs: vec!["hw:0".into()],
            midi_inputs: vec!["Keys".into()],
            ..AudioSetup::default()
        };
        let choice = |backend: &str| AudioChoice {
            backend: backend.into(),
            ..AudioChoice::default()
        };
        assert!(setup
            .refusal(&choice("jack"))
            .unwrap()
            .contains("No JACK server"));
        assert!(setup
            .refusal(&choice("alsa"))
            .unwrap()
            .contains("no sound card"));
        assert_eq!(setup.refusal(&choice("dummy")), None);
        assert_eq!(setup.refusal(&choice("auto")), None);
        let machine = AudioSetup {
            jack_server: true,
            sound_card: true,
            ..setup.clone()
        };
        assert_eq!(machine.refusal(&choice("jack")), None);
        assert_eq!(machine.refusal(&choice("alsa")), None);
        let mut gone = choice("alsa");
        gone.output_device = Some("hw:9".into());
        assert!(machine.refusal(&gone).unwrap().contains("\"hw:9\""));
        gone.output_device = Some("hw:0".into());
        gone.midi_input = Some("Pads".into());
        assert!(machine.refusal(&gone).unwrap().contains("\"Pads\""));
        gone.midi_input = Some("Keys".into());
        assert_eq!(machine.refusal(&gone), None);
    }

    #[test]
    fn a_saved_state_reads_back() {
        let state = PluginState {
            version: "0.1.0".into(),
            params: Default::default(),
            fields: Default::default(),
        };
        let path = std::env::temp_dir().join(format!("wren-state-{}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(read_state(&path).unwrap().version, "0.1.0");
        std::fs::write(&path, "{").unwrap();
        assert!(read_state(&path).unwrap_err().contains("wren-state"));
        std::fs::remove_file(&path).unwrap();
    }
}
