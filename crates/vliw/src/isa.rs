//! The machine's instruction set, decoded.
//!
//! A program is a list of bundles; a bundle holds slots for some engines; every slot of a
//! bundle runs in the same cycle. Operands are scratch addresses except where a field says
//! otherwise (`Const::value`, `AddImm::imm`, jump targets and offsets). `load_offset` decodes
//! to a plain [`Slot::Load`] with the offset added to both addresses (it has exactly that
//! meaning), and the slots that never change state when scoring (`pause`, `trace_write`, the
//! `debug` engine) decode to nothing or to [`Slot::Nop`].

/// Words per vector register (contiguous scratch words).
pub const VLEN: usize = 8;

/// Words of scratch (the machine's registers, constants and manual cache).
pub const SCRATCH_SIZE: usize = 1536;

/// An execution engine of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Alu,
    Valu,
    Load,
    Store,
    Flow,
    /// Debug slots (`compare`, `vcompare`, comments): ignored when scoring, never cost a cycle.
    Debug,
}

/// Slots per engine per bundle (`debug` has no limit that matters: its slots are dropped).
pub const SLOT_LIMITS: [(Engine, usize); 5] = [
    (Engine::Alu, 12),
    (Engine::Valu, 6),
    (Engine::Load, 2),
    (Engine::Store, 2),
    (Engine::Flow, 1),
];

impl Engine {
    /// The engine named `name` in the program format.
    pub fn from_name(name: &str) -> Option<Engine> {
        Some(match name {
            "alu" => Engine::Alu,
            "valu" => Engine::Valu,
            "load" => Engine::Load,
            "store" => Engine::Store,
            "flow" => Engine::Flow,
            "debug" => Engine::Debug,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Alu => "alu",
            Engine::Valu => "valu",
            Engine::Load => "load",
            Engine::Store => "store",
            Engine::Flow => "flow",
            Engine::Debug => "debug",
        }
    }

    /// How many slots of this engine one bundle may hold.
    pub fn slot_limit(self) -> usize {
        SLOT_LIMITS
            .iter()
            .find(|(e, _)| *e == self)
            .map(|(_, n)| *n)
            .unwrap_or(usize::MAX)
    }
}

/// A scalar ALU operation on two 32-bit words; results are taken modulo 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    /// Floor division; division by zero is a fault.
    Div,
    /// Ceiling division `(a + b - 1) / b` without overflow; division by zero is a fault.
    Cdiv,
    Xor,
    And,
    Or,
    /// `a << b`; 0 when `b >= 32` (not the shift amount taken modulo 32).
    Shl,
    /// `a >> b`; 0 when `b >= 32`.
    Shr,
    /// Remainder; by zero is a fault.
    Mod,
    /// 1 if `a < b` else 0.
    Lt,
    /// 1 if `a == b` else 0.
    Eq,
}

/// Every ALU operation with its name in the program format.
pub const ALU_OPS: [(AluOp, &str); 13] = [
    (AluOp::Add, "+"),
    (AluOp::Sub, "-"),
    (AluOp::Mul, "*"),
    (AluOp::Div, "//"),
    (AluOp::Cdiv, "cdiv"),
    (AluOp::Xor, "^"),
    (AluOp::And, "&"),
    (AluOp::Or, "|"),
    (AluOp::Shl, "<<"),
    (AluOp::Shr, ">>"),
    (AluOp::Mod, "%"),
    (AluOp::Lt, "<"),
    (AluOp::Eq, "=="),
];

impl AluOp {
    pub fn from_name(name: &str) -> Option<AluOp> {
        ALU_OPS.iter().find(|(_, n)| *n == name).map(|(op, _)| *op)
    }

    pub fn name(self) -> &'static str {
        ALU_OPS
            .iter()
            .find(|(op, _)| *op == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// The operation on two words, or `None` for a division by zero.
    #[inline(always)]
    pub fn apply(self, a: u32, b: u32) -> Option<u32> {
        Some(match self {
            AluOp::Add => a.wrapping_add(b),
            AluOp::Sub => a.wrapping_sub(b),
            AluOp::Mul => a.wrapping_mul(b),
            AluOp::Div => a.checked_div(b)?,
            AluOp::Cdiv => {
                if b == 0 {
                    return None;
                }
                (a as u64).div_ceil(b as u64) as u32
            }
            AluOp::Xor => a ^ b,
            AluOp::And => a & b,
            AluOp::Or => a | b,
            AluOp::Shl => a.checked_shl(b).unwrap_or(0),
            AluOp::Shr => a.checked_shr(b).unwrap_or(0),
            AluOp::Mod => a.checked_rem(b)?,
            AluOp::Lt => (a < b) as u32,
            AluOp::Eq => (a == b) as u32,
        })
    }
}

/// One decoded slot. Scratch addresses are `u16` (the format checks them below
/// [`SCRATCH_SIZE`], vectors entirely so); memory addresses come from scratch at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `dest = a op b`.
    Alu {
        op: AluOp,
        dest: u16,
        a: u16,
        b: u16,
    },
    /// Lane-wise `dest[i] = a[i] op b[i]` for the 8 lanes.
    Valu {
        op: AluOp,
        dest: u16,
        a: u16,
        b: u16,
    },
    /// `dest[i] = src` for the 8 lanes.
    VBroadcast {
        dest: u16,
        src: u16,
    },
    /// `dest[i] = a[i] * b[i] + c[i]`, modulo 2^32.
    MultiplyAdd {
        dest: u16,
        a: u16,
        b: u16,
        c: u16,
    },
    /// `dest = mem[scratch[addr]]` (also `load_offset`, with the offset added to both).
    Load {
        dest: u16,
        addr: u16,
    },
    /// `dest[i] = mem[scratch[addr] + i]`: 8 contiguous words.
    VLoad {
        dest: u16,
        addr: u16,
    },
    /// `dest = value` (an immediate).
    Const {
        dest: u16,
        value: u32,
    },
    /// `mem[scratch[addr]] = src`.
    Store {
        addr: u16,
        src: u16,
    },
    /// `mem[scratch[addr] + i] = src[i]`.
    VStore {
        addr: u16,
        src: u16,
    },
    /// `dest = cond != 0 ? a : b`.
    Select {
        dest: u16,
        cond: u16,
        a: u16,
        b: u16,
    },
    /// `dest = a + imm` modulo 2^32 (`imm` is the immediate reduced modulo 2^32).
    AddImm {
        dest: u16,
        a: u16,
        imm: u32,
    },
    /// Lane-wise select.
    VSelect {
        dest: u16,
        cond: u16,
        a: u16,
        b: u16,
    },
    /// Stops the core after this bundle's effects.
    Halt,
    /// Jumps to bundle `target` if `cond != 0` (a target past the end stops the program).
    CondJump {
        cond: u16,
        target: u32,
    },
    /// Adds `offset` to the index of the next bundle if `cond != 0`.
    CondJumpRel {
        cond: u16,
        offset: i32,
    },
    Jump {
        target: u32,
    },
    /// Jumps to the bundle whose index is in scratch `addr`.
    JumpIndirect {
        addr: u16,
    },
    /// `dest = 0` (the machine has one core).
    CoreId {
        dest: u16,
    },
    /// `pause` and `trace_write`: no effect when scoring (the scorer runs straight through).
    Nop,
}

impl Slot {
    /// The engine this slot runs on.
    pub fn engine(&self) -> Engine {
        match self {
            Slot::Alu { .. } => Engine::Alu,
            Slot::Valu { .. } | Slot::VBroadcast { .. } | Slot::MultiplyAdd { .. } => Engine::Valu,
            Slot::Load { .. } | Slot::VLoad { .. } | Slot::Const { .. } => Engine::Load,
            Slot::Store { .. } | Slot::VStore { .. } => Engine::Store,
            _ => Engine::Flow,
        }
    }
}
