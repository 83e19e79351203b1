//! The submission format: a program as data, `program.json`.
//!
//! ```json
//! {"format": "rdbench-vliw/1",
//!  "bundles": [
//!    {"load": [["const", 0, 7]]},
//!    {"alu": [["+", 2, 0, 1]], "valu": [["vbroadcast", 8, 2]]},
//!    {"flow": [["halt"]]}
//!  ]}
//! ```
//!
//! A bundle is an object from engine name to a list of slots; a slot is an array whose first
//! element is the operation's name and whose other elements are integers (the same shape as
//! the original take-home's instruction lists, so `json.dumps` of one is almost a program).
//! Engines run in the order their keys appear, and when two slots of one bundle write the
//! same word, the later one wins, as in the original. Parsing checks everything that can be
//! checked without running: the version, known engines and operations, argument counts,
//! slot limits, every scratch address (vectors entirely) inside scratch, immediates in range,
//! and the size caps ([`MAX_PROGRAM_BYTES`], [`MAX_BUNDLES`]). Each error names the bundle,
//! the engine and the slot.
//!
//! Deliberate differences from the original simulator, all stricter: a scratch address out of
//! range is an error even in a slot that never runs, negative addresses and offsets are
//! errors (Python would index from the end), and a key may not appear twice in a bundle.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::isa::{AluOp, Engine, Slot, SCRATCH_SIZE, VLEN};

/// The `format` value of this version of the program format.
pub const FORMAT: &str = "rdbench-vliw/1";

/// Largest `program.json` the scorer reads.
pub const MAX_PROGRAM_BYTES: u64 = 64 << 20;

/// Most bundles in a program (the scalar baseline of the largest profile has about 150,000).
pub const MAX_BUNDLES: usize = 1_000_000;

/// A bundle of the decoded program: its slots are `slots[start..start + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle {
    pub start: u32,
    pub len: u32,
    /// Whether running it costs a cycle: it has a key other than `debug` (even with no
    /// slots, as the original counts it).
    pub costs_cycle: bool,
}

/// A validated program, ready to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    pub bundles: Vec<Bundle>,
    pub slots: Vec<Slot>,
}

/// Why a program file is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where: `None` for the file as a whole.
    pub at: Option<Location>,
    pub message: String,
    /// Whether the file is well-formed but breaks a rule of the machine (slot limits,
    /// addresses), as opposed to being malformed.
    pub rule: bool,
}

/// A slot's place in the file (all indices from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bundle: usize,
    pub engine: String,
    pub slot: Option<usize>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "bundle {} ({:?}", at.bundle, at.engine)?;
            if let Some(s) = at.slot {
                write!(f, " slot {s}")?;
            }
            write!(f, "): ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn whole(message: impl Into<String>) -> Self {
        ParseError {
            at: None,
            message: message.into(),
            rule: false,
        }
    }
}

impl Program {
    /// Parses and validates a program file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Program, ParseError> {
        if bytes.len() as u64 > MAX_PROGRAM_BYTES {
            return Err(ParseError::whole(format!(
                "{} bytes is over the {MAX_PROGRAM_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let mut decoder = Decoder::default();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let read = FileSeed(&mut decoder)
            .deserialize(&mut de)
            .and_then(|()| de.end());
        // A decoding error (a slot's, found mid-read) is the precise one: it wins over the
        // JSON error serde reports for it.
        if let Some(e) = decoder.error.take() {
            return Err(e);
        }
        read.map_err(|e| ParseError::whole(format!("not a program file: {e}")))?;
        match decoder.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(ParseError::whole(format!(
                    "format {other:?} is not {FORMAT:?}"
                )))
            }
            None => return Err(ParseError::whole("not a program file: no `format` field")),
        }
        if !decoder.saw_bundles {
            return Err(ParseError::whole("not a program file: no `bundles` field"));
        }
        Ok(decoder.program)
    }

    /// The slots of bundle `i`.
    pub fn bundle_slots(&self, i: usize) -> &[Slot] {
        let b = self.bundles[i];
        &self.slots[b.start as usize..(b.start + b.len) as usize]
    }

    /// A program from bundles of slots (every bundle costs a cycle). For builders; the slots
    /// are assumed valid (`to_json` and `parse` check them).
    pub fn from_bundles(bundles: &[Vec<Slot>]) -> Program {
        let mut program = Program::default();
        for slots in bundles {
            let start = program.slots.len() as u32;
            program.slots.extend_from_slice(slots);
            program.bundles.push(Bundle {
                start,
                len: slots.len() as u32,
                costs_cycle: true,
            });
        }
        program
    }

    /// The program in the file format, one bundle per line (so that diffs of programs read
    /// well). Slots are grouped by engine, engines in the order of their first slot (which
    /// is the order they run in, and decides which of two writes to one word wins).
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"format\": \"{FORMAT}\", \"bundles\": [\n");
        for i in 0..self.bundles.len() {
            if i > 0 {
                out.push_str(",\n");
            }
            out.push('{');
            let mut first_engine = true;
            let mut engines: Vec<Engine> = Vec::new();
            for slot in self.bundle_slots(i) {
                if !engines.contains(&slot.engine()) {
                    engines.push(slot.engine());
                }
            }
            for engine in engines {
                let slots: Vec<&Slot> = self
                    .bundle_slots(i)
                    .iter()
                    .filter(|s| s.engine() == engine)
                    .collect();
                if slots.is_empty() {
                    continue;
                }
                if !first_engine {
                    out.push_str(", ");
                }
                first_engine = false;
                out.push_str(&format!("\"{}\": [", engine.name()));
                for (k, slot) in slots.iter().enumerate() {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&encode(slot));
                }
                out.push(']');
            }
            out.push('}');
        }
        out.push_str("\n]}\n");
        out
    }

    /// How many bundles cost a cycle (the cycle count of a straight-line program).
    pub fn cycle_bundles(&self) -> usize {
        self.bundles.iter().filter(|b| b.costs_cycle).count()
    }
}

/// A slot in the file format, e.g. `["+", 3, 1, 2]`.
fn encode(slot: &Slot) -> String {
    let list = |name: &str, args: &[i64]| {
        let mut s = format!("[\"{name}\"");
        for a in args {
            s.push_str(&format!(", {a}"));
        }
        s.push(']');
        s
    };
    let w = |x: u16| x as i64;
    match *slot {
        Slot::Alu { op, dest, a, b } | Slot::Valu { op, dest, a, b } => {
            list(op.name(), &[w(dest), w(a), w(b)])
        }
        Slot::VBroadcast { dest, src } => list("vbroadcast", &[w(dest), w(src)]),
        Slot::MultiplyAdd { dest, a, b, c } => list("multiply_add", &[w(dest), w(a), w(b), w(c)]),
        Slot::Load { dest, addr } => list("load", &[w(dest), w(addr)]),
        Slot::VLoad { dest, addr } => list("vload", &[w(dest), w(addr)]),
        Slot::Const { dest, value } => list("const", &[w(dest), value as i64]),
        Slot::Store { addr, src } => list("store", &[w(addr), w(src)]),
        Slot::VStore { addr, src } => list("vstore", &[w(addr), w(src)]),
        Slot::Select { dest, cond, a, b } => list("select", &[w(dest), w(cond), w(a), w(b)]),
        Slot::AddImm { dest, a, imm } => list("add_imm", &[w(dest), w(a), imm as i64]),
        Slot::VSelect { dest, cond, a, b } => list("vselect", &[w(dest), w(cond), w(a), w(b)]),
        Slot::Halt => list("halt", &[]),
        Slot::CondJump { cond, target } => list("cond_jump", &[w(cond), target as i64]),
        Slot::CondJumpRel { cond, offset } => list("cond_jump_rel", &[w(cond), offset as i64]),
        Slot::Jump { target } => list("jump", &[target as i64]),
        Slot::JumpIndirect { addr } => list("jump_indirect", &[w(addr)]),
        Slot::CoreId { dest } => list("coreid", &[w(dest)]),
        Slot::Nop => list("pause", &[]),
    }
}

/// Decodes one slot of `engine`; the error says what is wrong and whether it is a rule of the
/// machine (`true`) rather than a malformed slot.
fn decode(engine: Engine, raw: &RawSlot) -> Result<Slot, (String, bool)> {
    let op = if raw.op.cut { "" } else { raw.op.as_str() };
    let shown = &raw.op;
    let want = |n: usize| -> Result<Vec<i64>, (String, bool)> {
        if raw.args().len() != n {
            return Err((
                format!(
                    "{:?} takes {n} arguments, got {}",
                    shown.to_string(),
                    raw.args().len()
                ),
                false,
            ));
        }
        raw.args()
            .iter()
            .enumerate()
            .map(|(i, a)| a.ok_or_else(|| (format!("argument {} is not an integer", i + 1), false)))
            .collect()
    };
    // A scratch address, with `width` words from it (1 or VLEN) inside scratch.
    let scratch = |v: i64, width: usize| -> Result<u16, (String, bool)> {
        if v < 0 || v as u64 + width as u64 > SCRATCH_SIZE as u64 {
            let what = if width == 1 {
                format!("scratch address {v}")
            } else {
                format!("vector at scratch address {v} (8 words)")
            };
            return Err((
                format!("{what} is outside scratch (0..{SCRATCH_SIZE})"),
                true,
            ));
        }
        Ok(v as u16)
    };
    let s = |v: i64| scratch(v, 1);
    let vec = |v: i64| scratch(v, VLEN);
    let target = |v: i64| -> Result<u32, (String, bool)> {
        u32::try_from(v).map_err(|_| (format!("jump target {v} is not in 0..2^32"), true))
    };
    let word = |v: i64| -> u32 { v.rem_euclid(1 << 32) as u32 };
    match engine {
        Engine::Alu => {
            let op = AluOp::from_name(op).ok_or_else(|| (unknown(engine, shown), false))?;
            let a = want(3)?;
            Ok(Slot::Alu {
                op,
                dest: s(a[0])?,
                a: s(a[1])?,
                b: s(a[2])?,
            })
        }
        Engine::Valu => match op {
            "vbroadcast" => {
                let a = want(2)?;
                Ok(Slot::VBroadcast {
                    dest: vec(a[0])?,
                    src: s(a[1])?,
                })
            }
            "multiply_add" => {
                let a = want(4)?;
                Ok(Slot::MultiplyAdd {
                    dest: vec(a[0])?,
                    a: vec(a[1])?,
                    b: vec(a[2])?,
                    c: vec(a[3])?,
                })
            }
            _ => {
                let op = AluOp::from_name(op).ok_or_else(|| (unknown(engine, shown), false))?;
                let a = want(3)?;
                Ok(Slot::Valu {
                    op,
                    dest: vec(a[0])?,
                    a: vec(a[1])?,
                    b: vec(a[2])?,
                })
            }
        },
        Engine::Load => match op {
            "load" => {
                let a = want(2)?;
                Ok(Slot::Load {
                    dest: s(a[0])?,
                    addr: s(a[1])?,
                })
            }
            "load_offset" => {
                let a = want(3)?;
                if a[2] < 0 {
                    return Err((format!("offset {} is negative", a[2]), true));
                }
                Ok(Slot::Load {
                    dest: s(a[0].saturating_add(a[2]))?,
                    addr: s(a[1].saturating_add(a[2]))?,
                })
            }
            "vload" => {
                let a = want(2)?;
                Ok(Slot::VLoad {
                    dest: vec(a[0])?,
                    addr: s(a[1])?,
                })
            }
            "const" => {
                let a = want(2)?;
                Ok(Slot::Const {
                    dest: s(a[0])?,
                    value: word(a[1]),
                })
            }
            _ => Err((unknown(engine, shown), false)),
        },
        Engine::Store => match op {
            "store" => {
                let a = want(2)?;
                Ok(Slot::Store {
                    addr: s(a[0])?,
                    src: s(a[1])?,
                })
            }
            "vstore" => {
                let a = want(2)?;
                Ok(Slot::VStore {
                    addr: s(a[0])?,
                    src: vec(a[1])?,
                })
            }
            _ => Err((unknown(engine, shown), false)),
        },
        Engine::Flow => match op {
            "select" => {
                let a = want(4)?;
                Ok(Slot::Select {
                    dest: s(a[0])?,
                    cond: s(a[1])?,
                    a: s(a[2])?,
                    b: s(a[3])?,
                })
            }
            "add_imm" => {
                let a = want(3)?;
                Ok(Slot::AddImm {
                    dest: s(a[0])?,
                    a: s(a[1])?,
                    imm: word(a[2]),
                })
            }
            "vselect" => {
                let a = want(4)?;
                Ok(Slot::VSelect {
                    dest: vec(a[0])?,
                    cond: vec(a[1])?,
                    a: vec(a[2])?,
                    b: vec(a[3])?,
                })
            }
            "halt" => want(0).map(|_| Slot::Halt),
            "pause" => want(0).map(|_| Slot::Nop),
            "trace_write" => {
                let a = want(1)?;
                s(a[0])?;
                Ok(Slot::Nop)
            }
            "cond_jump" => {
                let a = want(2)?;
                Ok(Slot::CondJump {
                    cond: s(a[0])?,
                    target: target(a[1])?,
                })
            }
            "cond_jump_rel" => {
                let a = want(2)?;
                let offset = i32::try_from(a[1])
                    .map_err(|_| (format!("offset {} is out of range", a[1]), true))?;
                Ok(Slot::CondJumpRel {
                    cond: s(a[0])?,
                    offset,
                })
            }
            "jump" => {
                let a = want(1)?;
                Ok(Slot::Jump {
                    target: target(a[0])?,
                })
            }
            "jump_indirect" => {
                let a = want(1)?;
                Ok(Slot::JumpIndirect { addr: s(a[0])? })
            }
            "coreid" => {
                let a = want(1)?;
                Ok(Slot::CoreId { dest: s(a[0])? })
            }
            _ => Err((unknown(engine, shown), false)),
        },
        Engine::Debug => Ok(Slot::Nop),
    }
}

fn unknown(engine: Engine, op: &ShortName) -> String {
    format!(
        "{:?} is not an operation of the {} engine",
        op.to_string(),
        engine.name()
    )
}

// ---- reading the file: slots are decoded as they are read, so memory is the program's own
// (a raw copy of a 64 MiB file of tiny slots would take gigabytes) ----------------------------

/// What the reading collects: the program so far, the first decoding error, the header.
#[derive(Default)]
struct Decoder {
    program: Program,
    error: Option<ParseError>,
    format: Option<String>,
    saw_bundles: bool,
}

impl Decoder {
    /// Records a decoding error and returns the error that stops serde (the recorded one is
    /// what `parse` reports).
    fn fail<E: de::Error>(&mut self, error: ParseError) -> E {
        self.error.get_or_insert(error);
        E::custom("invalid program")
    }
}

/// The file: `{"format": ..., "bundles": [...]}` and nothing else.
struct FileSeed<'a>(&'a mut Decoder);

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a program: {\"format\": ..., \"bundles\": [...]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<ShortName>()? {
            match key.as_str() {
                "format" if !key.cut && self.0.format.is_none() => {
                    self.0.format = Some(map.next_value()?);
                }
                "bundles" if !key.cut && !self.0.saw_bundles => {
                    self.0.saw_bundles = true;
                    map.next_value_seed(BundlesSeed(&mut *self.0))?;
                }
                "format" | "bundles" => {
                    return Err(de::Error::custom(format!("duplicate field `{key}`")))
                }
                _ => {
                    return Err(de::Error::custom(format!(
                        "unknown field `{key}`, expected `format` or `bundles`"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The bundle list, refused past [`MAX_BUNDLES`] while it is read.
struct BundlesSeed<'a>(&'a mut Decoder);

impl<'de> DeserializeSeed<'de> for BundlesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BundlesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {MAX_BUNDLES} bundles")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(BundleSeed(&mut *self.0))?.is_some() {
            if self.0.program.bundles.len() > MAX_BUNDLES {
                return Err(de::Error::custom(format!(
                    "more than {MAX_BUNDLES} bundles"
                )));
            }
        }
        Ok(())
    }
}

/// One bundle: an object from engine name to a list of slots, engines kept in file order.
struct BundleSeed<'a>(&'a mut Decoder);

impl<'de> DeserializeSeed<'de> for BundleSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BundleSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a bundle: an object from engine name to a list of slots")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let decoder = self.0;
        let bundle = decoder.program.bundles.len();
        let start = decoder.program.slots.len() as u32;
        let mut costs_cycle = false;
        let mut seen: Vec<Engine> = Vec::new();
        while let Some(name) = map.next_key::<ShortName>()? {
            let at = Location {
                bundle,
                engine: name.to_string(),
                slot: None,
            };
            let known = if name.cut {
                None
            } else {
                Engine::from_name(name.as_str())
            };
            let Some(engine) = known else {
                return Err(decoder.fail(ParseError {
                    at: Some(at),
                    message: format!(
                        "unknown engine {:?} (the engines are alu, valu, load, store, flow, debug)",
                        name.to_string()
                    ),
                    rule: false,
                }));
            };
            if seen.contains(&engine) {
                return Err(decoder.fail(ParseError {
                    at: Some(at),
                    message: "the engine appears twice in one bundle".into(),
                    rule: false,
                }));
            }
            seen.push(engine);
            costs_cycle |= engine != Engine::Debug;
            map.next_value_seed(SlotsSeed {
                decoder: &mut *decoder,
                engine,
                at,
            })?;
        }
        let len = decoder.program.slots.len() as u32 - start;
        decoder.program.bundles.push(Bundle {
            start,
            len,
            costs_cycle,
        });
        Ok(())
    }
}

/// One engine's slots, decoded into the program as they are read (debug slots are dropped).
struct SlotsSeed<'a> {
    decoder: &'a mut Decoder,
    engine: Engine,
    at: Location,
}

impl<'de> DeserializeSeed<'de> for SlotsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SlotsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of slots")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let SlotsSeed {
            decoder,
            engine,
            at,
        } = self;
        let limit = engine.slot_limit();
        let mut i = 0;
        while let Some(raw) = seq.next_element::<RawSlot>()? {
            if engine == Engine::Debug {
                continue;
            }
            if i == limit {
                return Err(decoder.fail(ParseError {
                    at: Some(at),
                    message: format!(
                        "more than {limit} slots, over the engine's limit of {limit} per bundle"
                    ),
                    rule: true,
                }));
            }
            match decode(engine, &raw) {
                Ok(slot) => decoder.program.slots.push(slot),
                Err((message, rule)) => {
                    return Err(decoder.fail(ParseError {
                        at: Some(Location {
                            slot: Some(i),
                            ..at
                        }),
                        message,
                        rule,
                    }))
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// One slot: an operation name, then arguments (`None` where one is not an integer: fine in
/// a debug slot, an error anywhere else).
struct RawSlot {
    op: ShortName,
    args: [Option<i64>; MAX_ARGS],
    n_args: usize,
}

/// Most arguments a slot may have (the longest operations take 4).
const MAX_ARGS: usize = 8;

impl RawSlot {
    fn args(&self) -> &[Option<i64>] {
        &self.args[..self.n_args]
    }
}

/// An engine or operation name, kept inline: a parse of a large program would otherwise spend
/// most of its time allocating small strings. Names past [`ShortName::CAP`] bytes are no
/// name of the machine; they are kept cut, for the error message.
struct ShortName {
    bytes: [u8; ShortName::CAP],
    len: usize,
    cut: bool,
}

impl ShortName {
    const CAP: usize = 24;

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl fmt::Display for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.as_str(), if self.cut { "..." } else { "" })
    }
}

impl<'de> Deserialize<'de> for ShortName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ShortName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ShortName, E> {
                let mut len = v.len().min(ShortName::CAP);
                while !v.is_char_boundary(len) {
                    len -= 1;
                }
                let mut bytes = [0u8; ShortName::CAP];
                bytes[..len].copy_from_slice(&v.as_bytes()[..len]);
                Ok(ShortName {
                    bytes,
                    len,
                    cut: len < v.len(),
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for RawSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSlot;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a slot: [operation name, arguments...]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSlot, A::Error> {
                let op: ShortName = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("an empty slot"))?;
                let mut args = [None; MAX_ARGS];
                let mut n_args = 0;
                while let Some(arg) = seq.next_element::<Arg>()? {
                    if n_args == MAX_ARGS {
                        return Err(de::Error::custom(format!(
                            "a slot with more than {MAX_ARGS} arguments"
                        )));
                    }
                    args[n_args] = arg.0;
                    n_args += 1;
                }
                Ok(RawSlot { op, args, n_args })
            }
        }
        d.deserialize_seq(V)
    }
}

/// An argument: an integer, or anything else (kept as `None`, its content skipped).
struct Arg(Option<i64>);

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Arg;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a slot argument")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Arg, E> {
                Ok(Arg(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Arg, E> {
                Ok(Arg(i64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Arg, E> {
                Ok(Arg(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Arg, E> {
                Ok(Arg(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Arg, E> {
                Ok(Arg(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Arg, E> {
                Ok(Arg(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arg, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Arg(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Arg, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Arg(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ParseError {
        Program::parse(text.as_bytes()).expect_err(text)
    }

    #[test]
    fn the_header_is_exact() {
        assert!(err(r#"{"bundles": []}"#).message.contains("no `format`"));
        assert!(err(r#"{"format": "rdbench-vliw/1"}"#)
            .message
            .contains("no `bundles`"));
        assert!(
            err(r#"{"format": "rdbench-vliw/1", "format": "x", "bundles": []}"#)
                .message
                .contains("duplicate field")
        );
        assert!(
            err(r#"{"format": "rdbench-vliw/1", "bundles": [], "cores": 2}"#)
                .message
                .contains("unknown field")
        );
        assert!(
            err(r#"{"format": "rdbench-vliw/1", "bundles": []} trailing"#)
                .message
                .contains("not a program file")
        );
        assert_eq!(
            Program::parse(br#"{"bundles": [], "format": "rdbench-vliw/1"}"#).unwrap(),
            Program::default()
        );
    }

    #[test]
    fn too_many_bundles_are_refused_while_reading() {
        let mut text = String::from(r#"{"format": "rdbench-vliw/1", "bundles": ["#);
        text.push_str(&"{},".repeat(MAX_BUNDLES));
        text.push_str("{}]}");
        assert!(err(&text).message.contains("more than 1000000 bundles"));
    }

    #[test]
    fn slot_errors_name_their_place_and_kind() {
        let e = err(
            r#"{"format": "rdbench-vliw/1", "bundles": [{}, {"debug": [["compare", 0, [1, "x"]]], "valu": [["vbroadcast", 0, 1], ["multiply_add", 8, 0, 0]]}]}"#,
        );
        assert_eq!(
            e.at,
            Some(Location {
                bundle: 1,
                engine: "valu".into(),
                slot: Some(1)
            })
        );
        assert!(e.message.contains("takes 4 arguments, got 3"), "{e}");
        assert!(!e.rule);
        let e = err(r#"{"format": "rdbench-vliw/1", "bundles": [{"flow": [["halt"], ["halt"]]}]}"#);
        assert!(e.rule && e.message.contains("limit of 1"), "{e}");
        let e = err(r#"{"format": "rdbench-vliw/1", "bundles": [{"alu": [["+", 0, 0, 1.5]]}]}"#);
        assert!(e.message.contains("argument 3 is not an integer"), "{e}");
        let long = "x".repeat(100);
        let e = err(&format!(
            r#"{{"format": "rdbench-vliw/1", "bundles": [{{"{long}": []}}]}}"#
        ));
        assert!(
            e.message.contains("unknown engine") && e.message.contains("..."),
            "{e}"
        );
    }

    #[test]
    fn debug_slots_are_free_and_empty_engine_lists_cost_a_cycle() {
        let p = Program::parse(
            br#"{"format": "rdbench-vliw/1", "bundles": [{"debug": [["comment", "x"]]}, {"alu": []}, {}]}"#,
        )
        .unwrap();
        assert_eq!(p.cycle_bundles(), 1);
        assert_eq!(p.slots.len(), 0);
    }
}
