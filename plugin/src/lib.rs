//! Wren: a neural melody instrument.
//!
//! A small recurrent network, compressed to fit the audio buffer's time
//! budget, generates melodies on a 16th-note grid in time with the host and
//! plays them. The crate has three rooms:
//!
//! - [`melody`], [`timbre`] and [`model`]: data, tokens, the timbre
//!   network's inputs and outputs, step models, ONNX and kernels; usable
//!   anywhere, no threads of their own.
//! - [`engine`]: the host-free instrument. `engine::audio` runs on the audio
//!   thread, `engine::inference` on the inference thread; both are real-time
//!   safe. Loading happens off both.
//! - the plugin wrapper (nice-plug: VST3, CLAP, standalone), its
//!   [`editor`] (egui), the [`monitor`] the audio thread publishes for it,
//!   and MIDI [`export`].

pub mod editor;
pub mod engine;
pub mod export;
pub mod melody;
pub mod model;
pub mod monitor;
pub mod presets;
pub mod standalone;
pub mod timbre;

/// Loads the embedded models of every preset and starts an engine for
/// blocks of at most `max_block` samples. An instrument whose timbre models
/// are not all shipped is left out (the additive voice plays instead).
///
/// The cost of every preset is measured afterwards, on a background thread
/// (see [`engine::Engine::measure_costs`]): loading takes no longer for it,
/// and until the costs are in auto runs the preset meant for the buffer.
/// Allocates.
pub fn start_engine(sample_rate: f64, max_block: usize) -> Result<engine::Engine, String> {
    use model::kernel::GruKernel;
    let presets = presets::embedded();
    let names: Vec<&str> = presets.iter().map(|p| p.melody.as_str()).collect();
    let loaded = engine::models::load_embedded(&names).map_err(|e| e.to_string())?;
    let kernels = loaded.iter().map(|m| GruKernel::new(&m.net)).collect();
    let mut costs = engine::cost::CostModels {
        melody: loaded.into_iter().map(|m| m.net).collect(),
        timbres: Vec::new(),
    };
    let mut timbres = Vec::new();
    for instrument in timbre::INSTRUMENTS {
        let names: Vec<String> = presets.iter().map(|p| p.timbre_model(instrument)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match engine::models::load_embedded(&names) {
            Ok(models) => {
                timbres.push(models.iter().map(|m| GruKernel::new(&m.net)).collect());
                costs
                    .timbres
                    .push(models.into_iter().map(|m| m.net).collect());
            }
            Err(error) => {
                log::info!("no neural {instrument}: {error}");
                timbres.push(Vec::new());
                costs.timbres.push(Vec::new());
            }
        }
    }
    let mut engine = engine::Engine::with_timbres(kernels, timbres, sample_rate, max_block)
        .map_err(|e| e.to_string())?;
    let shares: Vec<f64> = presets.iter().map(|p| p.budget_share).collect();
    let buffers: Vec<f64> = presets.iter().map(|p| p.buffer_seconds()).collect();
    engine.set_auto_tuning(presets::auto().tuning);
    engine.set_costs(engine::cost::CostTable::unmeasured(&shares));
    engine.set_preset_buffers(&buffers);
    if let Err(error) = engine.measure_costs(costs) {
        log::warn!("costs not measured, auto runs the preset meant for the buffer: {error}");
    }
    Ok(engine)
}

pub mod plugin;

nice_plug::nice_export_clap!(plugin::Wren);
nice_plug::nice_export_vst3!(plugin::Wren);
