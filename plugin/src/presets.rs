//! Compression presets: which model variant runs, and for what budget.
//!
//! The presets in `presets/*.toml` are embedded in the plugin, best quality
//! first. Adding one takes its TOML file, an entry in [`EMBEDDED`] and a
//! variant of the plugin's preset choice. `presets/auto.toml` is not a set
//! of models: it tunes the `auto` choice, which runs the best preset that
//! fits the host's buffer (see [`crate::engine::auto`]).

use serde::Deserialize;

/// One compression preset.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Preset {
    /// Short name shown to the user.
    pub name: String,
    /// What it runs.
    pub description: String,
    /// The melody model it uses (a manifest name).
    pub melody: String,
    /// The timbre variant it uses for every instrument: the model of
    /// instrument `i` is `timbre-<i>-<timbre>`.
    pub timbre: String,
    /// Samples in the buffer it is meant for.
    pub block_size: usize,
    /// Sample rate of the buffer it is meant for.
    pub sample_rate: u32,
    /// Share of the buffer's time budget the inference may use.
    pub budget_share: f64,
}

/// The `auto` choice: its name and how it plans and reacts.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AutoPreset {
    /// Short name shown to the user.
    pub name: String,
    /// What it does.
    pub description: String,
    /// How it plans and reacts.
    #[serde(flatten)]
    pub tuning: crate::engine::auto::Tuning,
}

/// What the preset parameter asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The best preset that fits the host's buffer, chosen by the engine.
    Auto,
    /// One compression preset: its index in [`EMBEDDED`].
    Fixed(usize),
}

/// Errors reading a preset.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    /// The TOML is malformed or misses a field.
    #[error("invalid preset: {0}")]
    Parse(#[from] toml::de::Error),
    /// No preset has that name.
    #[error("no preset named {0:?}")]
    Missing(String),
}

/// The embedded compression presets, best quality first, cheapest last.
pub const EMBEDDED: &[&str] = &[
    include_str!("../../presets/studio.toml"),
    include_str!("../../presets/balanced.toml"),
    include_str!("../../presets/live.toml"),
    include_str!("../../presets/ultra.toml"),
];

/// The embedded `auto` choice.
pub const AUTO: &str = include_str!("../../presets/auto.toml");

/// The choice a new instance and a plain render use: auto.
pub const DEFAULT: &str = "auto";

impl Preset {
    /// The manifest name of its timbre model for an instrument.
    pub fn timbre_model(&self, instrument: &str) -> String {
        format!("timbre-{instrument}-{}", self.timbre)
    }

    /// The duration of the buffer it is meant for, in seconds.
    pub fn buffer_seconds(&self) -> f64 {
        self.block_size as f64 / self.sample_rate.max(1) as f64
    }
}

/// Parses a preset's TOML.
pub fn parse(text: &str) -> Result<Preset, PresetError> {
    Ok(toml::from_str(text)?)
}

/// All embedded presets.
pub fn embedded() -> Vec<Preset> {
    EMBEDDED
        .iter()
        .map(|t| parse(t).expect("embedded presets are valid"))
        .collect()
}

/// The embedded preset with this name and its index.
pub fn find(name: &str) -> Result<(usize, Preset), PresetError> {
    embedded()
        .into_iter()
        .enumerate()
        .find(|(_, p)| p.name == name)
        .ok_or_else(|| PresetError::Missing(name.to_string()))
}

/// The embedded `auto` choice.
pub fn auto() -> AutoPreset {
    toml::from_str(AUTO).expect("the embedded auto preset is valid")
}

/// What a preset name asks for: `auto`, or an embedded preset.
pub fn select(name: &str) -> Result<Selection, PresetError> {
    if name == auto().name {
        return Ok(Selection::Auto);
    }
    find(name).map(|(index, _)| Selection::Fixed(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_presets_parse_and_name_shipped_models() {
        let presets = embedded();
        assert!(!presets.is_empty());
        assert!(presets.len() <= crate::engine::cost::MAX_PRESETS);
        for p in &presets {
            let shipped = |name: &str| {
                crate::engine::models::EMBEDDED_MODELS
                    .iter()
                    .any(|(n, _)| *n == name)
            };
            assert!(shipped(&p.melody));
            for instrument in crate::timbre::INSTRUMENTS {
                let model = p.timbre_model(instrument);
                // Every instrument whose teacher ships ships all variants.
                if shipped(&format!("timbre-{instrument}-teacher")) {
                    assert!(shipped(&model), "{model} is missing");
                }
            }
            assert!(p.budget_share > 0.0 && p.budget_share <= 1.0);
            assert!((16..=8192).contains(&p.block_size), "{}", p.name);
            assert!((8_000..=384_000).contains(&p.sample_rate), "{}", p.name);
        }
        assert!(find("live").is_ok());
        assert!(matches!(find("nope"), Err(PresetError::Missing(_))));
        assert!(parse("name = 3").is_err());
    }

    #[test]
    fn presets_run_from_large_buffers_to_small_ones_and_names_are_unique() {
        let presets = embedded();
        assert_eq!(presets[0].name, "studio");
        for pair in presets.windows(2) {
            assert!(
                pair[0].buffer_seconds() >= pair[1].buffer_seconds(),
                "{} is meant for a shorter buffer than {}",
                pair[0].name,
                pair[1].name
            );
        }
        let mut names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
        names.push("auto");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), presets.len() + 1);
    }

    #[test]
    fn auto_is_the_default_and_parses() {
        let auto = auto();
        assert_eq!(auto.name, DEFAULT);
        assert!(matches!(select(DEFAULT), Ok(Selection::Auto)));
        assert!(matches!(select("studio"), Ok(Selection::Fixed(0))));
        assert!(select("nope").is_err());
        let t = auto.tuning;
        assert!(t.max_tempo >= 240.0, "plans for fast tempos");
        assert!(t.strikes >= 1);
        assert!(t.recover_seconds > 0.0 && t.recover_seconds <= t.max_recover_seconds);
        assert!(t.forget_seconds > 0.0 && t.settle_seconds >= 0.0);
    }
}
