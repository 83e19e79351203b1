//! Tests of the launch plan: parsing, checking against kernel signatures, resolving. The
//! signature parser's own tests are in [`crate::cuda_sig`].

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

const GOOD: &str = r#"
[constants]
BLOCK = 256
ITEMS = 16

[[scratch]]
name = "tile_sums"
type = "i32"
len = "ceil_div(n, BLOCK * ITEMS)"
init = "zero"

[[launch]]
kernel = "scan_tiles"
grid = "ceil_div(n, BLOCK * ITEMS)"
block = "BLOCK"
shared_mem = "BLOCK * 4"
args = ["input", "output", "tile_sums", "i32: n"]

[[launch]]
kernel = "add_offsets"
grid = ["ceil_div(n, BLOCK)", 1, "1"]
block = [256]
args = ["output", "tile_sums", "u64: n"]
"#;

const GOOD_CU: &str = r#"
#include <cstdint>
#define BLOCK 256

// scan each tile
extern "C" __global__ void __launch_bounds__(256)
scan_tiles(const int* __restrict__ input,
           int* __restrict__ output,   /* per-element result */
           int* tile_sums,
           int n)
{
    extern __shared__ int smem[];
    if (threadIdx.x == 0) { tile_sums[blockIdx.x] = 0; }
}

extern "C" __global__ void add_offsets(int *output, const int *tile_sums, unsigned long long n) {
    // nothing
}
"#;

fn path() -> &'static Path {
    Path::new("sub/launch.toml")
}

fn parse(text: &str) -> Result<LaunchPlan, PlanError> {
    LaunchPlan::parse(text, path())
}

fn buffers() -> Vec<BufferSpec> {
    vec![
        BufferSpec::new("input", ElemType::I32, false),
        BufferSpec::new("output", ElemType::I32, true),
    ]
}

fn n(v: i64) -> BTreeMap<String, i64> {
    [("n".to_string(), v)].into_iter().collect()
}

fn resolve(text: &str, nv: i64) -> Result<ResolvedPlan, PlanError> {
    parse(text)?.resolve(&n(nv), &buffers(), &PlanLimits::default())
}

fn err_of(text: &str, nv: i64) -> String {
    match resolve(text, nv) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn launch_with(fields: &str) -> String {
    format!("[[launch]]\nkernel = \"k\"\n{fields}\n")
}

#[test]
fn good_plan_resolves_for_several_sizes() {
    let plan = parse(GOOD).unwrap();
    assert_eq!(plan.kernel_names(), vec!["scan_tiles", "add_offsets"]);
    assert_eq!(plan.constants.get("BLOCK"), Some(&256));
    for (nv, tiles, grid2) in [
        (1i64, 1u64, 1u32),
        (1000, 1, 4),
        (100_000_000, 24_415, 390_625),
    ] {
        let r = plan
            .resolve(&n(nv), &buffers(), &PlanLimits::default())
            .unwrap();
        assert_eq!(
            r.scratch,
            vec![ResolvedScratch {
                name: "tile_sums".into(),
                elem: ElemType::I32,
                len: tiles,
                zero_init: true
            }]
        );
        assert_eq!(r.scratch[0].bytes(), tiles * 4);
        assert_eq!(r.total_scratch_bytes(), tiles * 4);
        assert_eq!(
            r.launches[0],
            ResolvedLaunch {
                kernel: "scan_tiles".into(),
                grid: [tiles as u32, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 1024,
                args: vec![
                    ResolvedArg::Buffer("input".into()),
                    ResolvedArg::Buffer("output".into()),
                    ResolvedArg::Buffer("tile_sums".into()),
                    ResolvedArg::I32(nv as i32),
                ],
            }
        );
        assert_eq!(r.launches[1].grid, [grid2, 1, 1]);
        assert_eq!(r.launches[1].block, [256, 1, 1]);
        assert_eq!(r.launches[1].shared_mem_bytes, 0);
        assert_eq!(r.launches[1].threads_per_block(), 256);
        assert_eq!(r.launches[1].args[2], ResolvedArg::U64(nv as u64));
    }
}

#[test]
fn good_plan_checks_against_its_source() {
    let plan = parse(GOOD).unwrap();
    let sigs = parse_kernel_signatures(GOOD_CU);
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    plan.check_against(&sigs, &buffers()).unwrap();
}

#[test]
fn all_scalar_types_and_3d_dims() {
    let text = launch_with(
        "grid = [2, 3, 4]\nblock = [8, 8, 16]\nshared_mem = 0\nargs = [\"i32: -n\", \"u32: n * 2\", \"i64: -n * n\", \"u64: n * n\"]",
    );
    let r = resolve(&text, 100_000).unwrap();
    let l = &r.launches[0];
    assert_eq!(l.grid, [2, 3, 4]);
    assert_eq!(l.block, [8, 8, 16]);
    assert_eq!(
        l.args,
        vec![
            ResolvedArg::I32(-100_000),
            ResolvedArg::U32(200_000),
            ResolvedArg::I64(-10_000_000_000),
            ResolvedArg::U64(10_000_000_000)
        ]
    );
    assert!(r.scratch.is_empty());
}

#[test]
fn init_none_and_default_zero() {
    let text = format!(
        "[[scratch]]\nname = \"a\"\ntype = \"f64\"\nlen = 10\ninit = \"none\"\n[[scratch]]\nname = \"b\"\ntype = \"u8\"\nlen = \"n\"\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    let r = resolve(&text, 7).unwrap();
    assert!(!r.scratch[0].zero_init);
    assert_eq!(r.scratch[0].bytes(), 80);
    assert!(r.scratch[1].zero_init);
    assert_eq!(r.scratch[1].len, 7);
    assert_eq!(r.total_scratch_bytes(), 87);
}

#[test]
fn not_toml() {
    let e = parse("[[launch]\nkernel = ").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PlanError::Toml { .. }));
    assert!(msg.starts_with("sub/launch.toml: "), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
}

#[test]
fn unknown_keys_are_errors() {
    for (text, key) in [
        ("[[launch]]\nkernel = \"k\"\ngrid = 1\nblok = 1\n", "blok"),
        ("[[launch]]\nkernel = \"k\"\ngrid = 1\nblock = 1\nshared = 4\n", "shared"),
        ("launches = []\n", "launches"),
        (
            "[[scratch]]\nname = \"s\"\ntype = \"i32\"\nlen = 1\nzero = true\n[[launch]]\nkernel = \"k\"\ngrid = 1\nblock = 1\n",
            "zero",
        ),
    ] {
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.starts_with("sub/launch.toml: "), "{msg}");
        assert!(msg.contains(&format!("unknown field `{key}`")), "{msg}");
        assert!(msg.contains("line"), "{msg}");
    }
}

#[test]
fn missing_required_keys() {
    let msg = parse("[[launch]]\nkernel = \"k\"\ngrid = 1\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing field `block`"), "{msg}");
    let msg = parse("[[launch]]\ngrid = 1\nblock = 1\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing field `kernel`"), "{msg}");
}

#[test]
fn zero_launches() {
    for text in ["", "[constants]\nB = 1\n"] {
        let msg = parse(text).unwrap_err().to_string();
        assert!(
            msg.starts_with("sub/launch.toml: launch: the plan has no launches"),
            "{msg}"
        );
    }
}

#[test]
fn constants_must_be_integers() {
    let cases = [
        (
            "B = \"256\"",
            "constants.B: expected an integer, found a string; constants are plain integers",
        ),
        ("B = 2.5", "constants.B: expected an integer, found a float"),
        (
            "B = true",
            "constants.B: expected an integer, found a boolean",
        ),
        (
            "B = [1]",
            "constants.B: expected an integer, found an array",
        ),
        ("\"my const\" = 1", "must be an identifier"),
        ("min = 1", "constants.min: `min` is the name of a function"),
    ];
    for (c, needle) in cases {
        let text = format!("[constants]\n{c}\n{}", launch_with("grid = 1\nblock = 1"));
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("sub/launch.toml: constants."), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
}

#[test]
fn negative_constant_is_fine_but_negative_grid_is_not() {
    let text = format!(
        "[constants]\nB = -4\n{}",
        launch_with("grid = \"B\"\nblock = 32")
    );
    let msg = err_of(&text, 1);
    assert!(
        msg.contains("launch[0] (kernel \"k\"): grid: `B` = -4; grid.x must be in [1, 2147483647] (with n = 1)"),
        "{msg}"
    );
}

#[test]
fn zero_grid() {
    let msg = err_of(&launch_with("grid = \"n / 1024\"\nblock = 256"), 1000);
    assert!(
        msg.starts_with("sub/launch.toml: launch[0] (kernel \"k\"): grid: `n / 1024` = 0"),
        "{msg}"
    );
    assert!(msg.contains("must be in [1, 2147483647]"), "{msg}");
    let msg = err_of(&launch_with("grid = [1, 0]\nblock = 256"), 1000);
    assert!(
        msg.contains("grid.y: `0` = 0; grid.y must be in [1, 65535]"),
        "{msg}"
    );
}

#[test]
fn grid_too_large() {
    let msg = err_of(&launch_with("grid = [1, \"n\"]\nblock = 1"), 70_000);
    assert!(
        msg.contains("grid.y: `n` = 70000; grid.y must be in [1, 65535]"),
        "{msg}"
    );
    let msg = err_of(&launch_with("grid = \"n\"\nblock = 1"), 1 << 31);
    assert!(msg.contains("2147483648"), "{msg}");
    assert!(resolve(&launch_with("grid = \"n\"\nblock = 1"), (1 << 31) - 1).is_ok());
}

#[test]
fn block_limits() {
    let msg = err_of(&launch_with("grid = 1\nblock = 2048"), 1);
    assert!(
        msg.contains("block: `2048` = 2048; block.x must be in [1, 1024]"),
        "{msg}"
    );
    let msg = err_of(&launch_with("grid = 1\nblock = [64, 32]"), 1);
    assert!(
        msg.contains("64 x 32 x 1 = 2048 threads per block; at most 1024"),
        "{msg}"
    );
    let msg = err_of(&launch_with("grid = 1\nblock = [1, 1, 65]"), 1);
    assert!(msg.contains("block.z must be in [1, 64]"), "{msg}");
    let msg = err_of(&launch_with("grid = 1\nblock = 0"), 1);
    assert!(msg.contains("block.x must be in [1, 1024]"), "{msg}");
    assert!(resolve(&launch_with("grid = 1\nblock = [32, 32]"), 1).is_ok());
    let msg = parse(&launch_with("grid = 1\nblock = [1, 2, 3, 4]"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("block: expected 1 to 3 dimensions"), "{msg}");
    let msg = parse(&launch_with("grid = []\nblock = 1"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("grid: expected 1 to 3 dimensions [x, y, z], found 0"),
        "{msg}"
    );
}

#[test]
fn shared_mem_limits() {
    let msg = err_of(
        &launch_with("grid = 1\nblock = 1\nshared_mem = \"n * 1024\""),
        228,
    );
    assert!(
        msg.contains(
            "shared_mem: `n * 1024` = 233472 bytes; dynamic shared memory must be in [0, 232448]"
        ),
        "{msg}"
    );
    let msg = err_of(&launch_with("grid = 1\nblock = 1\nshared_mem = -4"), 1);
    assert!(msg.contains("shared_mem: `(-4)` = -4 bytes"), "{msg}");
    let r = resolve(&launch_with("grid = 1\nblock = 1\nshared_mem = 232448"), 1).unwrap();
    assert_eq!(r.launches[0].shared_mem_bytes, 232_448);
}

#[test]
fn overflowing_and_negative_sizes() {
    let text = format!(
        "[[scratch]]\nname = \"s\"\ntype = \"f32\"\nlen = \"n * n * n\"\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    let msg = err_of(&text, 100_000_000);
    assert!(
        msg.starts_with("sub/launch.toml: scratch \"s\": len: "),
        "{msg}"
    );
    assert!(msg.contains("overflows"), "{msg}");
    assert!(msg.contains("(with n = 100000000)"), "{msg}");

    let text = format!(
        "[[scratch]]\nname = \"s\"\ntype = \"f32\"\nlen = \"n - 5\"\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    let msg = err_of(&text, 1);
    assert!(
        msg.contains("scratch \"s\": len: `n - 5` = -4; a scratch buffer needs at least 1 element"),
        "{msg}"
    );

    let text = format!(
        "[[scratch]]\nname = \"s\"\ntype = \"f64\"\nlen = \"n * n\"\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    let msg = err_of(&text, 100_000_000);
    assert!(
        msg.contains("at most 4294967296 bytes are allowed per scratch buffer"),
        "{msg}"
    );

    let msg = err_of(
        &launch_with("grid = 1\nblock = 1\nargs = [\"i32: n * 100\"]"),
        100_000_000,
    );
    assert!(
        msg.contains("args[0]: `n * 100` = 10000000000 does not fit in i32"),
        "{msg}"
    );
    let msg = err_of(&launch_with("grid = 1\nblock = 1\nargs = [\"u64: -n\"]"), 1);
    assert!(msg.contains("does not fit in u64"), "{msg}");
    let msg = err_of(
        &launch_with("grid = 1\nblock = 1\nargs = [\"u32: 5 / (n - 1)\"]"),
        1,
    );
    assert!(msg.contains("division by zero"), "{msg}");
}

#[test]
fn total_scratch_limit() {
    let mut text = String::new();
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "[[scratch]]\nname = \"{name}\"\ntype = \"u8\"\nlen = \"n\"\n"
        ));
    }
    text.push_str(&launch_with("grid = 1\nblock = 1"));
    let limits = PlanLimits {
        max_scratch_bytes: 1000,
        max_total_scratch_bytes: 2500,
        ..Default::default()
    };
    let plan = parse(&text).unwrap();
    assert!(plan.resolve(&n(800), &buffers(), &limits).is_ok());
    let msg = plan
        .resolve(&n(900), &buffers(), &limits)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("scratch \"c\": scratch buffers up to this one take 2700 bytes; at most 2500"),
        "{msg}"
    );
    let msg = plan
        .resolve(&n(1001), &buffers(), &limits)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("scratch \"a\": len:"), "{msg}");
}

#[test]
fn unknown_names() {
    let msg = err_of(
        &format!(
            "[constants]\nBLOCK = 256\n{}",
            launch_with("grid = \"ceil_div(n, BLOK)\"\nblock = 1")
        ),
        5,
    );
    assert!(
        msg.contains("grid: unknown name `BLOK`; known names: BLOCK, n"),
        "{msg}"
    );
    assert!(
        msg.contains("(at column 13 of `ceil_div(n, BLOK)`)"),
        "{msg}"
    );

    let msg = err_of(&launch_with("grid = 1\nblock = 1\nargs = [\"inptu\"]"), 5);
    assert!(
        msg.contains("args[0]: unknown buffer `inptu`; the buffers are `input`, `output`"),
        "{msg}"
    );
    let msg = err_of(&launch_with("grid = 1\nblock = 1\nargs = [\"n\"]"), 5);
    assert!(
        msg.contains("`n` is a task variable, not a buffer; to pass its value write \"i32: n\""),
        "{msg}"
    );
}

#[test]
fn duplicate_and_clashing_names() {
    let two = "[[scratch]]\nname = \"s\"\ntype = \"i32\"\nlen = 1\n".repeat(2);
    let msg = parse(&format!("{two}{}", launch_with("grid = 1\nblock = 1")))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("scratch \"s\": duplicate scratch buffer name `s`"),
        "{msg}"
    );

    let clash = format!(
        "[[scratch]]\nname = \"output\"\ntype = \"i32\"\nlen = 1\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    let msg = err_of(&clash, 1);
    assert!(
        msg.contains("scratch \"output\": `output` is the name of a task buffer"),
        "{msg}"
    );
    let plan = parse(&clash).unwrap();
    assert!(plan.check_against(&[], &buffers()).is_err());

    let clash = format!(
        "[[scratch]]\nname = \"n\"\ntype = \"i32\"\nlen = 1\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    assert!(err_of(&clash, 1).contains("`n` is the name of a task variable"));

    let clash = format!("[constants]\nn = 4\n{}", launch_with("grid = 1\nblock = 1"));
    assert!(err_of(&clash, 1).contains("constants.n: `n` is a task variable"));
    let clash = format!(
        "[constants]\ninput = 4\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    assert!(err_of(&clash, 1).contains("constants.input: `input` is the name of a task buffer"));

    let clash = format!(
        "[constants]\ns = 4\n[[scratch]]\nname = \"s\"\ntype = \"i32\"\nlen = 1\n{}",
        launch_with("grid = 1\nblock = 1")
    );
    assert!(parse(&clash)
        .unwrap_err()
        .to_string()
        .contains("has the name of a constant"));
}

#[test]
fn bad_types_and_values() {
    let s = |ty: &str, len: &str, init: &str| {
        format!(
            "[[scratch]]\nname = \"s\"\ntype = {ty}\nlen = {len}\n{init}{}",
            launch_with("grid = 1\nblock = 1")
        )
    };
    let msg = parse(&s("\"float\"", "1", "")).unwrap_err().to_string();
    assert!(
        msg.contains("scratch \"s\": type: unknown element type \"float\"; expected one of `i8`"),
        "{msg}"
    );
    let msg = parse(&s("\"f32\"", "1.5", "")).unwrap_err().to_string();
    assert!(
        msg.contains(
            "scratch \"s\": len: expected an integer or an expression string, found a float"
        ),
        "{msg}"
    );
    let msg = parse(&s("\"f32\"", "1", "init = \"zeros\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("init: unknown init \"zeros\"; expected \"zero\" or \"none\""),
        "{msg}"
    );
    let msg = parse(&s("3", "1", "")).unwrap_err().to_string();
    assert!(
        matches!(parse(&s("3", "1", "")), Err(PlanError::Toml { .. })),
        "{msg}"
    );
    let msg = parse(&format!(
        "[[scratch]]\nname = \"1s\"\ntype = \"i32\"\nlen = 1\n{}",
        launch_with("grid = 1\nblock = 1")
    ))
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("scratch[0]: name: \"1s\" is not an identifier"),
        "{msg}"
    );

    let msg = parse(&launch_with("grid = true\nblock = 1"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("grid: expected an integer, an expression string, or an array"),
        "{msg}"
    );
    let msg = parse(&launch_with("grid = [1, 2.0]\nblock = 1"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("grid.y: expected an integer or an expression string, found a float"),
        "{msg}"
    );
    let msg = parse(&launch_with("grid = \"n +\"\nblock = 1"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("launch[0] (kernel \"k\"): grid: expected an integer, a name, `-` or `(`, found end of expression"), "{msg}");
    let msg = parse("[[launch]]\nkernel = \"my kernel\"\ngrid = 1\nblock = 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "launch[0] (kernel \"my kernel\"): kernel: the kernel name must be a C identifier"
        ),
        "{msg}"
    );
}

#[test]
fn bad_args() {
    let a = |arg: &str| {
        parse(&launch_with(&format!(
            "grid = 1\nblock = 1\nargs = [{arg}]"
        )))
        .unwrap_err()
        .to_string()
    };
    let msg = a("\"f32: 1\"");
    assert!(
        msg.contains("args[0]: unknown scalar type \"f32\""),
        "{msg}"
    );
    assert!(msg.contains("must be integers"), "{msg}");
    let msg = a("\"int: n\"");
    assert!(
        msg.contains(
            "unknown scalar type \"int\" in \"int: n\"; expected one of `i32`, `u32`, `i64`, `u64`"
        ),
        "{msg}"
    );
    let msg = a("\"i32: \"");
    assert!(
        msg.contains("args[0]: in \"i32: \": expected an expression"),
        "{msg}"
    );
    let msg = a("\"input + 1\"");
    assert!(
        msg.contains("is neither a buffer name nor \"TYPE: EXPR\""),
        "{msg}"
    );
    let msg = a("1");
    assert!(msg.contains("invalid type"), "{msg}");
    let ok = parse(&launch_with(
        "grid = 1\nblock = 1\nargs = [\" input \", \"i64:n\"]",
    ))
    .unwrap();
    assert_eq!(ok.launches[0].args[0], ArgSpec::Buffer("input".into()));
}

#[test]
fn too_many_launches_and_scratch() {
    let mut text = String::new();
    for _ in 0..65 {
        text.push_str(&launch_with("grid = 1\nblock = 1"));
    }
    let msg = err_of(&text, 1);
    assert!(
        msg.contains("launch: the plan has 65 launches; at most 64 are allowed"),
        "{msg}"
    );
    let mut text = String::new();
    for i in 0..17 {
        text.push_str(&format!(
            "[[scratch]]\nname = \"s{i}\"\ntype = \"i32\"\nlen = 1\n"
        ));
    }
    text.push_str(&launch_with("grid = 1\nblock = 1"));
    let msg = err_of(&text, 1);
    assert!(
        msg.contains("scratch: the plan has 17 scratch buffers; at most 16"),
        "{msg}"
    );
    let limits = PlanLimits {
        max_scratch_buffers: 32,
        ..Default::default()
    };
    assert!(parse(&text)
        .unwrap()
        .resolve(&n(1), &buffers(), &limits)
        .is_ok());
}

#[test]
fn from_file_reads_and_names_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("launch.toml");
    std::fs::write(&p, GOOD).unwrap();
    let plan = LaunchPlan::from_file(&p).unwrap();
    assert_eq!(plan.path, p);
    assert_eq!(plan.launches.len(), 2);
    let missing = dir.path().join("nope.toml");
    let e = LaunchPlan::from_file(&missing).unwrap_err();
    assert!(matches!(e, PlanError::Io { .. }));
    assert_eq!(e.path(), missing.as_path());
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: cannot read the launch plan",
            missing.display()
        )),
        "{msg}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "grid = ").unwrap();
    assert!(LaunchPlan::from_file(&bad)
        .unwrap_err()
        .to_string()
        .starts_with(&bad.display().to_string()));
}

#[test]
fn every_message_starts_with_path() {
    let bads = [
        "x",
        "",
        "[constants]\nA = 1.5\n[[launch]]\nkernel=\"k\"\ngrid=1\nblock=1\n",
        &launch_with("grid = \"(\"\nblock = 1"),
    ];
    for b in bads {
        let msg = parse(b).unwrap_err().to_string();
        assert!(msg.starts_with("sub/launch.toml: "), "{msg}");
    }
}

// ---- check_against ---------------------------------------------------------------------

fn sigs_from(src: &str) -> Vec<KernelSignature> {
    parse_kernel_signatures(src)
}

#[test]
fn unknown_kernel_lists_kernels() {
    let plan = parse(&launch_with("grid = 1\nblock = 1")).unwrap();
    let msg = plan
        .check_against(&sigs_from(GOOD_CU), &buffers())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("launch[0] (kernel \"k\"): kernel: unknown kernel `k`; the extern \"C\" __global__ kernels in the CUDA source are `scan_tiles`, `add_offsets`"),
        "{msg}"
    );
    let msg = plan.check_against(&[], &buffers()).unwrap_err().to_string();
    assert!(
        msg.contains("no extern \"C\" __global__ kernels were found"),
        "{msg}"
    );
}

#[test]
fn missing_and_extra_arguments() {
    let src = "extern \"C\" __global__ void scan(const int* a, int* b, int* c, int n) {}";
    let mk = |args: &str| {
        parse(&format!(
            "[[launch]]\nkernel = \"scan\"\ngrid = 1\nblock = 1\nargs = [{args}]\n"
        ))
        .unwrap()
    };
    let msg = mk("\"input\", \"output\", \"output\"")
        .check_against(&sigs_from(src), &buffers())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("launch[0] (kernel \"scan\"): args: kernel scan takes 4 parameters, launch[0] passes 3 arguments"), "{msg}");
    let msg = mk("\"input\", \"output\", \"output\", \"i32: n\", \"i32: 1\"")
        .check_against(&sigs_from(src), &buffers())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("takes 4 parameters, launch[0] passes 5 arguments"),
        "{msg}"
    );
    mk("\"input\", \"output\", \"output\", \"i32: n\"")
        .check_against(&sigs_from(src), &buffers())
        .unwrap();
}

#[test]
fn pointer_scalar_mismatches() {
    let src = r#"extern "C" __global__ void k(int* out, long long n, unsigned int m, int scale, const float* pp) {}"#;
    let check = |args: &str| {
        parse(&format!(
            "[[launch]]\nkernel = \"k\"\ngrid = 1\nblock = 1\nargs = [{args}]\n"
        ))
        .unwrap()
        .check_against(&sigs_from(src), &buffers())
    };
    check("\"output\", \"i64: n\", \"u32: n\", \"i32: 1\", \"input\"").unwrap();
    let msg = check("\"i64: 0\", \"i64: n\", \"u32: n\", \"i32: 1\", \"input\"")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("args[0]: a scalar i64 is passed, but parameter 0 of kernel k is a pointer"),
        "{msg}"
    );
    let msg = check("\"output\", \"input\", \"u32: n\", \"i32: 1\", \"input\"")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("args[1]: buffer `input` is a pointer, but parameter 1 of kernel k is a scalar i64 (`long long`)"), "{msg}");
    let msg = check("\"output\", \"i32: n\", \"u32: n\", \"i32: 1\", \"input\"")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("args[1]: a scalar i32 is passed, but parameter 1 of kernel k is `long long` (32-bit where the kernel expects 64-bit)"), "{msg}");
    let msg = check("\"output\", \"i64: n\", \"i32: n\", \"i32: 1\", \"input\"")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("same width, different signedness"), "{msg}");
    let msg = check("\"outptu\", \"i64: n\", \"u32: n\", \"i32: 1\", \"input\"")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("args[0]: unknown buffer `outptu`"), "{msg}");
}

/// A parameter the plan cannot express (a struct of any size, a float, `T**`, a reference, an
/// unknown type) used to take any argument unchecked: an 8-byte pointer for a 4 KiB struct
/// would have the driver read 4 KiB of the scorer's memory into the kernel. Now refused, with
/// the parameter's type and what a plan can pass.
#[test]
fn parameters_a_plan_cannot_pass_are_refused() {
    let cases = [
        ("struct Big { int x[1024]; };", "struct Big p", "\"input\""),
        ("struct Big { int x[1024]; };", "Big p", "\"i64: n\""),
        (
            "typedef struct { float a, b; } Pair;",
            "Pair p",
            "\"i32: 1\"",
        ),
        ("", "float scale", "\"i32: 1\""),
        ("", "double scale", "\"u64: n\""),
        ("", "float** pp", "\"input\""),
        ("", "int& r", "\"i32: 1\""),
        ("", "__half h", "\"i32: 1\""),
        ("", "short s", "\"i32: 1\""),
    ];
    for (decl, param, arg) in cases {
        let src = format!(r#"{decl} extern "C" __global__ void k(int* out, {param}) {{}}"#);
        let sigs = sigs_from(&src);
        assert!(
            matches!(sigs[0].params[1], ParamKind::Other(_)),
            "{param}: {:?}",
            sigs[0].params
        );
        let plan = parse(&format!(
            "[[launch]]\nkernel = \"k\"\ngrid = 1\nblock = 1\nargs = [\"output\", {arg}]\n"
        ))
        .unwrap();
        let msg = plan
            .check_against(&sigs, &buffers())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("args[1]: parameter 1 of kernel k is `")
                && msg.contains("a type a launch plan cannot pass"),
            "{param}: {msg}"
        );
    }
}

#[test]
fn read_only_buffer_to_non_const_pointer_is_allowed() {
    let src = r#"extern "C" __global__ void k(int* a, const int* b) {}"#;
    let plan = parse(&launch_with(
        "grid = 1\nblock = 1\nargs = [\"input\", \"output\"]",
    ))
    .unwrap();
    plan.check_against(&sigs_from(src), &buffers()).unwrap();
}

#[test]
fn docs_example_resolves_as_documented() {
    let doc = include_str!("../../../../docs/launch-plan.md");
    let block = |fence: &str| -> String {
        let start = doc.find(fence).map(|i| i + fence.len()).unwrap_or(0);
        let len = doc[start..].find("```").unwrap_or(0);
        doc[start..start + len].to_string()
    };
    let plan = parse(&block("```toml\n")).unwrap();
    let sigs = parse_kernel_signatures(&block("```cuda\n"));
    plan.check_against(&sigs, &buffers()).unwrap();
    let r = plan
        .resolve(&n(100_000_000), &buffers(), &PlanLimits::default())
        .unwrap();
    assert_eq!(r.scratch[0].len, 24_415);
    assert_eq!(r.scratch[0].bytes(), 97_660);
    assert_eq!(r.launches[0].grid, [24_415, 1, 1]);
    assert_eq!(r.launches[0].shared_mem_bytes, 1024);
    assert_eq!(r.launches[1].args[2], ResolvedArg::I64(100_000_000));
}

proptest::proptest! {
    #[test]
    fn arbitrary_plan_text_never_panics(s in "[\\[\\]a-z0-9_=\" \n,:*+-]{0,80}") {
        if let Ok(plan) = LaunchPlan::parse(&s, Path::new("p.toml")) {
            let _ = plan.resolve(&n(3), &buffers(), &PlanLimits::default());
            let _ = plan.check_against(&parse_kernel_signatures(GOOD_CU), &buffers());
        }
    }
}

/// A plan expression written as a long flat sum is one level deep: the red team's legitimate
/// 129-term sum was refused as "nested too deep". Deep nesting is still refused, as a plan
/// error naming the field.
#[test]
fn a_flat_sum_of_129_terms_is_accepted() {
    let sum = vec!["1"; 128].join(" + ") + " + ceil_div(n, BLOCK * ITEMS)";
    let plan = parse(&GOOD.replace(
        "grid = \"ceil_div(n, BLOCK * ITEMS)\"",
        &format!("grid = \"{sum}\""),
    ))
    .unwrap();
    plan.check_against(&sigs_from(GOOD_CU), &buffers()).unwrap();
    let r = plan
        .resolve(&n(100_000), &buffers(), &PlanLimits::default())
        .unwrap();
    assert_eq!(
        r.launches[0].grid[0],
        128 + 100_000u64.div_ceil(256 * 16) as u32
    );
    let deep = format!("{}n{}", "(1 + ".repeat(200), ")".repeat(200));
    let msg = parse(&GOOD.replace(
        "grid = \"ceil_div(n, BLOCK * ITEMS)\"",
        &format!("grid = \"{deep}\""),
    ))
    .unwrap_err()
    .to_string();
    assert!(msg.contains("nests too deeply"), "{msg}");
}
