//! The plugin wrapper on the audio thread: `Wren::process` allocates nothing
//! (checked by `assert_no_alloc`) for any block size, with note input beyond
//! its capacity, live and offline, and sends the notes it plays to the host.

use std::cell::Cell;

use assert_no_alloc::{assert_no_alloc, AllocDisabler};
use nice_plug::context::process::SendEventError;
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;

use wren::plugin::Wren;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

const SAMPLE_RATE: f32 = 48_000.0;
const MAX_BLOCK: usize = 512;
const BLOCK_SIZES: [usize; 7] = [512, 0, 1, 37, 256, 511, 64];

/// A host's side of activation: records the latency reported.
struct Activation {
    latency: Cell<Option<u32>>,
}

impl ActivateContext<Wren> for Activation {
    fn plugin_api(&self) -> PluginApi {
        PluginApi::Clap
    }
    fn execute(&self, _task: ()) {}
    fn set_latency_samples(&self, samples: u32) {
        self.latency.set(Some(samples));
    }
    fn set_current_voice_capacity(&self, _capacity: u32) {}
}

/// A host's side of one block: its transport, note input and an output queue
/// allocated up front.
struct Block {
    transport: Transport,
    input: Vec<PluginNoteEvent<Wren>>,
    next: usize,
    output: Vec<PluginNoteEvent<Wren>>,
}

impl ProcessContext<Wren> for Block {
    fn plugin_api(&self) -> PluginApi {
        PluginApi::Clap
    }
    fn execute_background(&self, _task: ()) {}
    fn execute_gui(&self, _task: ()) {}
    fn transport(&self) -> &Transport {
        &self.transport
    }
    fn next_event(&mut self) -> Option<PluginNoteEvent<Wren>> {
        let event = self.input.get(self.next).copied();
        self.next += 1;
        event
    }
    fn try_send_event(
        &mut self,
        event: PluginNoteEvent<Wren>,
    ) -> Result<(), (PluginNoteEvent<Wren>, SendEventError)> {
        if self.output.len() == self.output.capacity() {
            return Err((event, SendEventError::HostBufferFull));
        }
        self.output.push(event);
        Ok(())
    }
    fn set_latency_samples(&self, _samples: u32) {}
    fn request_restart(&self) {}
    fn set_current_voice_capacity(&self, _capacity: u32) {}
}

fn note_on(timing: u32, key: u8) -> PluginNoteEvent<Wren> {
    NoteEvent::NoteOn {
        timing,
        voice_id: VoiceID::Wildcard,
        channel: Channel::Number(0),
        key: Key::Number(key),
        velocity: 0.8,
    }
}

fn activate(wren: &mut Wren, process_mode: ProcessMode) {
    let config = BufferConfig {
        sample_rate: SAMPLE_RATE,
        min_buffer_size: None,
        max_buffer_size: MAX_BLOCK as u32,
        process_mode,
    };
    let mut activation = Activation {
        latency: Cell::new(None),
    };
    assert!(wren.activate(&Wren::AUDIO_IO_LAYOUTS[0], &config, &mut activation));
    assert_eq!(
        activation.latency.get(),
        Some(MAX_BLOCK as u32),
        "the neural voice's latency, one block, is reported on activation"
    );
    wren.reset();
}

/// What a run of blocks produced.
struct Played {
    peak: f32,
    note_ons: usize,
    note_offs: usize,
}

/// Plays `seconds` of a running 120 BPM transport in blocks of varying size.
/// Everything the host side needs is allocated outside the checked calls.
fn play(wren: &mut Wren, seconds: f32, input_every: usize) -> Played {
    let (mut left, mut right) = (vec![0.0f32; MAX_BLOCK], vec![0.0f32; MAX_BLOCK]);
    let mut played = Played {
        peak: 0.0,
        note_ons: 0,
        note_offs: 0,
    };
    let mut position = 0usize;
    let mut block_index = 0usize;
    while position < (seconds * SAMPLE_RATE) as usize {
        let frames = BLOCK_SIZES[block_index % BLOCK_SIZES.len()];
        let mut transport = Transport::new(SAMPLE_RATE);
        transport.playing = true;
        transport.tempo = Some(120.0);
        transport.pos_samples = Some(position as i64);
        transport.time_sig_numerator = Some(4);
        transport.time_sig_denominator = Some(4);
        let mut input = Vec::new();
        if block_index.is_multiple_of(input_every) {
            // More events than the plugin keeps, and out of order, as a broken
            // host might send them: the rest must be dropped, nothing may panic.
            input.extend((0..3000).map(|i| note_on(i as u32 % (frames.max(1) as u32), 64)));
        }
        let mut block = Block {
            transport,
            input,
            next: 0,
            output: Vec::with_capacity(4096),
        };
        let mut buffer = Buffer::default();
        // SAFETY: the slices borrow `left` and `right`, which outlive `buffer`
        // (dropped at the end of this iteration); both have `frames` samples.
        unsafe {
            buffer.set_slices(frames, |slices| {
                slices.push(&mut left[..frames]);
                slices.push(&mut right[..frames]);
            });
        }
        let mut aux = AuxiliaryBuffers {
            inputs: &mut [],
            outputs: &mut [],
        };

        let status = assert_no_alloc(|| wren.process(&mut buffer, &mut aux, &mut block));

        assert_eq!(status, ProcessStatus::KeepAlive);
        for sample in buffer.as_slice().iter().flat_map(|c| c.iter()) {
            assert!(sample.is_finite());
            played.peak = played.peak.max(sample.abs());
        }
        for event in &block.output {
            match event {
                NoteEvent::NoteOn { .. } => played.note_ons += 1,
                NoteEvent::NoteOff { .. } => played.note_offs += 1,
                other => panic!("unexpected event out: {other:?}"),
            }
        }
        position += frames;
        block_index += 1;
    }
    played
}

#[test]
fn process_allocates_nothing_live_and_offline_and_sends_its_notes() {
    let mut wren = Wren::default();

    activate(&mut wren, ProcessMode::Realtime);
    let live = play(&mut wren, 2.0, 50);
    assert!(live.peak > 0.01, "silent live: peak {}", live.peak);

    activate(&mut wren, ProcessMode::Offline);
    let offline = play(&mut wren, 4.0, 1_000_000);
    assert!(offline.peak > 0.01, "silent offline: peak {}", offline.peak);
    assert!(
        offline.note_ons >= 4,
        "{} note-ons offline",
        offline.note_ons
    );
    assert!(offline.note_offs >= 1, "no note-off offline");
}
