//! `cargo xtask timbre-data`: renders every planned take of the timbre
//! instruments from the soundfont, analyses it, and prints what the data
//! holds. Training renders the same takes the same way, so this command is
//! how to inspect (and listen to) the data, not a step before training.

use std::path::PathBuf;

use anyhow::Result;
use wren::melody::dataset::{read_dataset, Split};
use wren_pipeline::progress::Progress;
use wren_pipeline::timbre::analysis::{Analyzer, SAMPLE_RATE};
use wren_pipeline::timbre::data::{self, TakeKind};
use wren_pipeline::timbre::pipeline::TimbreConfig;
use wren_pipeline::timbre::{split_name, Summary};

/// Which instruments' notes the timbre commands render: Wren's, or a
/// program of a soundfont of one's own over a range, learnt by the network
/// of the Wren instrument it then plays as.
#[derive(clap::Args, Debug)]
pub struct SourceArgs {
    /// Instruments (flute, violin, trumpet); all by default. With --program
    /// or --range, the one Wren instrument whose network learns your
    /// instrument and which it plays as.
    #[arg(long = "instrument")]
    pub instruments: Vec<String>,
    /// The soundfont the notes are rendered from.
    #[arg(long, default_value = data::SOUNDFONT)]
    pub soundfont: PathBuf,
    /// The soundfont's program (bank 0, numbered from 0: General MIDI's
    /// flute is 73, cello 42). Default: the instrument's General MIDI program.
    #[arg(long)]
    pub program: Option<u8>,
    /// Lowest and highest MIDI pitch rendered, e.g. 43-72 (at least an
    /// octave). Default: the instrument's range.
    #[arg(long, value_parser = pitch_range)]
    pub range: Option<(u8, u8)>,
}

impl SourceArgs {
    /// Sets the soundfont and the instruments of a timbre configuration.
    pub fn apply(&self, config: &mut TimbreConfig) -> Result<()> {
        config.soundfont = self.soundfont.clone();
        config.choose(&self.instruments, self.program, self.range)
    }
}

/// Parses `low-high`, two MIDI pitches.
fn pitch_range(text: &str) -> Result<(u8, u8), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?}: give low-high, e.g. 43-72"))?;
    let pitch = |p: &str| {
        p.trim()
            .parse::<u8>()
            .map_err(|_| format!("{p:?} is not a MIDI pitch (0 to 127)"))
    };
    Ok((pitch(low)?, pitch(high)?))
}

/// Options of `cargo xtask timbre-data`.
#[derive(clap::Args)]
pub struct TimbreDataArgs {
    /// The instruments and where their notes come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Legato phrases per instrument in the training split (a quarter as
    /// many in each held-out split).
    #[arg(long, default_value_t = 40)]
    pub phrases: usize,
    /// Where example WAV files and summary.json go.
    #[arg(long, default_value = "target/timbre-data")]
    pub out: PathBuf,
}

pub fn run(args: &TimbreDataArgs) -> Result<()> {
    let mut config = TimbreConfig::full(String::new());
    args.source.apply(&mut config)?;
    let font = data::load_soundfont(&config.soundfont)?;
    for instrument in &config.instruments {
        println!("{}", data::describe(&font, &config.soundfont, instrument)?);
    }
    let tunes = read_dataset(std::path::Path::new("models/data/melodies.tsv.gz"))?;
    let mut analyzer = Analyzer::new();
    let mut summaries = std::collections::BTreeMap::new();
    for instrument in &config.instruments {
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
