//! Compression presets: which model variant runs, and for what budget.
//!
//! The presets in `presets/*.toml` are embedded in the plugin.

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
    /// Share of the buffer's time budget the inference may use.
    pub budget_share: f64,
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

/// The embedded presets, in parameter order.
pub const EMBEDDED: [&str; 3] = [
    include_str!("../../presets/studio.toml"),
    include_str!("../../presets/balanced.toml"),
    include_str!("../../presets/live.toml"),
];

/// The preset a new instance and a plain render use: the int8 student, whose
/// step costs the least of the buffer's budget.
pub const DEFAULT: &str = "live";

impl Preset {
    /// The manifest name of its timbre model for an instrument.
    pub fn timbre_model(&self, instrument: &str) -> String {
        format!("timbre-{instrument}-{}", self.timbre)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_presets_parse_and_name_shipped_models() {
        let presets = embedded();
        assert_eq!(presets.len(), 3);
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
        }
        assert!(find("live").is_ok());
        assert!(matches!(find("nope"), Err(PresetError::Missing(_))));
        assert!(parse("name = 3").is_err());
    }
}
