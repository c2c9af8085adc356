//! Translation between nice-plug's host types and the engine's. Audio thread:
//! every function here is real-time safe (no allocation, lock or wait).

use nice_plug::midi::control_change::{ALL_NOTES_OFF, ALL_SOUND_OFF};
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::{NoteEvent as HostEvent, Transport as HostTransport};

use crate::engine::{NoteEvent, Transport};

/// MIDI channel of the notes Wren sends (zero-based).
pub const OUT_CHANNEL: u8 = 0;

/// The engine's view of the host transport. Positions the host gives only in
/// seconds or samples are converted to beats with the tempo.
///
/// A stopped transport silences the melody, except in an offline render:
/// scripted hosts (pedalboard) render offline with a transport that never
/// starts, and a render is meant to sound, so there Wren gets no timeline and
/// free-runs at its free tempo.
pub fn transport(host: &HostTransport, offline: bool) -> Transport {
    let time_signature = match (host.time_sig_numerator, host.time_sig_denominator) {
        (Some(n), Some(d)) if n > 0 && d > 0 => Some((n as u32, d as u32)),
        _ => None,
    };
    if offline && !host.playing {
        return Transport {
            playing: false,
            tempo: None,
            pos_beats: None,
            time_signature,
            loop_beats: None,
        };
    }
    let loop_beats = host
        .loop_range_beats()
        .filter(|(start, end)| start.is_finite() && end.is_finite() && end > start);
    Transport {
        playing: host.playing,
        tempo: host.tempo.filter(|t| t.is_finite() && *t > 0.0),
        pos_beats: host.pos_beats().filter(|b| b.is_finite()),
        time_signature,
        loop_beats,
    }
}

/// The engine event for a host note event, if Wren reacts to it.
pub fn note_in<S>(event: &HostEvent<S>) -> Option<NoteEvent> {
    match *event {
        HostEvent::NoteOn {
            timing,
            key: Key::Number(note),
            velocity,
            ..
        } => Some(NoteEvent::On {
            offset: timing,
            note: note.min(127),
            velocity: midi_velocity(velocity),
        }),
        HostEvent::NoteOff { timing, key, .. } | HostEvent::Choke { timing, key, .. } => {
            Some(match key {
                Key::Number(note) => NoteEvent::Off {
                    offset: timing,
                    note: note.min(127),
                },
                Key::Wildcard => NoteEvent::AllOff { offset: timing },
            })
        }
        HostEvent::MidiCC { timing, cc, .. } if cc == ALL_NOTES_OFF || cc == ALL_SOUND_OFF => {
            Some(NoteEvent::AllOff { offset: timing })
        }
        _ => None,
    }
}

/// The host event for a note the engine plays.
pub fn note_out<S>(event: NoteEvent) -> HostEvent<S> {
    let channel = Channel::Number(OUT_CHANNEL);
    match event {
        NoteEvent::On {
            offset,
            note,
            velocity,
        } => HostEvent::NoteOn {
            timing: offset,
            voice_id: VoiceID::Wildcard,
            channel,
            key: Key::Number(note),
            velocity: velocity as f32 / 127.0,
        },
        NoteEvent::Off { offset, note } => HostEvent::NoteOff {
            timing: offset,
            voice_id: VoiceID::Wildcard,
            channel,
            key: Key::Number(note),
            velocity: 0.0,
        },
        NoteEvent::AllOff { offset } => HostEvent::NoteOff {
            timing: offset,
            voice_id: VoiceID::Wildcard,
            channel,
            key: Key::Wildcard,
            velocity: 0.0,
        },
    }
}

/// A velocity in `[0, 1]` as MIDI 1 to 127; a note-on is never silent.
fn midi_velocity(velocity: f32) -> u8 {
    if velocity.is_finite() {
        (velocity * 127.0).round().clamp(1.0, 127.0) as u8
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note_on(timing: u32, key: Key, velocity: f32) -> HostEvent<()> {
        HostEvent::NoteOn {
            timing,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(0),
            key,
            velocity,
        }
    }

    #[test]
    fn notes_in_keep_their_offsets_and_velocities() {
        let event = note_in(&note_on(17, Key::Number(64), 1.0));
        let expected = NoteEvent::On {
            offset: 17,
            note: 64,
            velocity: 127,
        };
        assert_eq!(event, Some(expected));
        let soft = note_in(&note_on(0, Key::Number(64), 0.0));
        assert!(matches!(soft, Some(NoteEvent::On { velocity: 1, .. })));
        let broken = note_in(&note_on(0, Key::Number(64), f32::NAN));
        assert!(matches!(broken, Some(NoteEvent::On { velocity: 1, .. })));
        assert_eq!(note_in(&note_on(0, Key::Wildcard, 0.5)), None);
    }

    #[test]
    fn all_notes_off_comes_from_wildcards_and_controllers() {
        let off = HostEvent::<()>::NoteOff {
            timing: 5,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Wildcard,
            key: Key::Wildcard,
            velocity: 0.0,
        };
        assert_eq!(note_in(&off), Some(NoteEvent::AllOff { offset: 5 }));
        for cc in [ALL_SOUND_OFF, ALL_NOTES_OFF] {
            let event = HostEvent::<()>::MidiCC {
                timing: 9,
                channel: 0,
                cc,
                value: 0.0,
            };
            assert_eq!(note_in(&event), Some(NoteEvent::AllOff { offset: 9 }));
        }
        let other = HostEvent::<()>::MidiCC {
            timing: 9,
            channel: 0,
            cc: 7,
            value: 1.0,
        };
        assert_eq!(note_in(&other), None);
    }

    #[test]
    fn notes_out_round_trip() {
        for event in [
            NoteEvent::On {
                offset: 3,
                note: 62,
                velocity: 100,
            },
            NoteEvent::Off {
                offset: 40,
                note: 62,
            },
            NoteEvent::AllOff { offset: 8 },
        ] {
            assert_eq!(note_in(&note_out::<()>(event)), Some(event));
        }
    }

    #[test]
    fn transport_positions_become_beats() {
        let mut host = HostTransport::new(48_000.0);
        assert_eq!(transport(&host, false), Transport::default());
        host.playing = true;
        host.tempo = Some(120.0);
        host.pos_samples = Some(48_000);
        host.time_sig_numerator = Some(6);
        host.time_sig_denominator = Some(8);
        let converted = transport(&host, false);
        assert_eq!(converted.pos_beats, Some(2.0));
        assert_eq!(converted.time_signature, Some((6, 8)));
        host.time_sig_denominator = Some(0);
        host.tempo = Some(f64::NAN);
        let broken = transport(&host, false);
        assert_eq!((broken.tempo, broken.time_signature), (None, None));
    }

    #[test]
    fn a_stopped_offline_render_free_runs_and_a_stopped_live_one_stays_stopped() {
        let mut host = HostTransport::new(48_000.0);
        host.tempo = Some(120.0);
        host.pos_beats = Some(0.0);
        let live = transport(&host, false);
        assert_eq!(
            (live.playing, live.tempo, live.pos_beats),
            (false, Some(120.0), Some(0.0))
        );
        let render = transport(&host, true);
        assert_eq!((render.tempo, render.pos_beats), (None, None));
        host.playing = true;
        assert_eq!(transport(&host, true), transport(&host, false));
    }
}
