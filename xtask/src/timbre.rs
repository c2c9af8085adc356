//! `cargo xtask timbre-data`: renders every planned take of the timbre
//! instruments from the soundfont, analyses it, and prints what the data
//! holds. Training renders the same takes the same way, so this command is
//! how to inspect (and listen to) the data, not a step before training.

use std::path::PathBuf;

use anyhow::{Context, Result};
use wren::melody::dataset::{read_dataset, Split};
use wren_pipeline::progress::Progress;
use wren_pipeline::timbre::analysis::{Analyzer, SAMPLE_RATE};
use wren_pipeline::timbre::data::{self, TakeKind};
use wren_pipeline::timbre::{split_name, Summary};

/// Options of `cargo xtask timbre-data`.
#[derive(clap::Args)]
pub struct TimbreDataArgs {
    /// Instruments to render (flute, violin, trumpet); all by default.
    #[arg(long = "instrument")]
    pub instruments: Vec<String>,
    /// Legato phrases per instrument in the training split (a quarter as
    /// many in each held-out split).
    #[arg(long, default_value_t = 40)]
    pub phrases: usize,
    /// Where example WAV files and summary.json go.
    #[arg(long, default_value = "target/timbre-data")]
    pub out: PathBuf,
    /// The soundfont.
    #[arg(long, default_value = data::SOUNDFONT)]
    pub soundfont: PathBuf,
}

pub fn run(args: &TimbreDataArgs) -> Result<()> {
    let instruments = if args.instruments.is_empty() {
        data::INSTRUMENTS.to_vec()
    } else {
        args.instruments
            .iter()
            .map(|name| {
                data::instrument(name).with_context(|| {
                    format!("no instrument {name:?}; there are flute, violin and trumpet")
                })
            })
            .collect::<Result<_>>()?
    };
    let font = data::load_soundfont(&args.soundfont)?;
    let tunes = read_dataset(std::path::Path::new("models/data/melodies.tsv.gz"))?;
    let mut analyzer = Analyzer::new();
    let mut summaries = std::collections::BTreeMap::new();
    for instrument in &instruments {
        let takes = data::plan(instrument, &tunes, args.phrases);
        let folder = args.out.join(instrument.name);
        std::fs::create_dir_all(&folder)?;
        let progress = Progress::new(instrument.name, takes.len() as u64);
        let mut summary = Summary::default();
        let mut written = std::collections::HashSet::new();
        for (i, take) in takes.into_iter().enumerate() {
            let recording = data::record(&font, instrument, take, &mut analyzer)?;
            summary.add(&recording);
            let take = &recording.take;
            let first = take.notes[0];
            // A few to listen to: the first long note of each split, and the
            // first phrase of each.
            let long = take.kind == TakeKind::Single && first.length == data::LENGTHS[2];
            let kind = match take.kind {
                TakeKind::Single => "note",
                TakeKind::Phrase => "phrase",
            };
            if (take.kind == TakeKind::Phrase || long) && written.insert((take.split, kind)) {
                let name = format!("{}-{kind}-{}.wav", split_name(take.split), first.pitch);
                crate::render::write_wav(&folder.join(name), &recording.audio, SAMPLE_RATE as u32)?;
            }
            progress.set(i as u64 + 1, &format!("pitch {}", first.pitch));
        }
        progress.finish();
        summaries.insert(instrument.name, summary);
    }
    println!(
        "\ntimbre data ({} Hz, hop {} samples)",
        SAMPLE_RATE,
        wren_pipeline::timbre::analysis::HOP
    );
    println!(
        "{:<9} {:<6} {:>6} {:>8} {:>9} {:>9}",
        "", "split", "notes", "phrases", "seconds", "frames"
    );
    for (name, s) in &summaries {
        for split in [Split::Train, Split::Valid, Split::Test] {
            let key = split_name(split);
            println!(
                "{:<9} {:<6} {:>6} {:>8} {:>9.0} {:>9}",
                name,
                key,
                s.notes.get(key).unwrap_or(&0),
                s.phrases.get(key).unwrap_or(&0),
                s.seconds.get(key).unwrap_or(&0.0),
                s.frames.get(key).unwrap_or(&0)
            );
        }
    }
    let path = args.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summaries)?)?;
    println!("wrote {} and example WAV files", path.display());
    Ok(())
}
