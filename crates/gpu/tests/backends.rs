//! One test body per device (candle's pattern): every test here runs on the CPU emulator
//! always and on the GPU where there is one (`RDBENCH_REQUIRE_GPU=1` makes a missing GPU a
//! failure). They pin the kit's own harness kernels: poisoning and the comparisons that
//! decide every kernel task's verdicts.

use rdbench_gpu::backend::{Arg, CheckedKernel, Dims, KernelBackend};
use rdbench_gpu::backend_test;
use rdbench_gpu::bench::routine::KIT_HARNESS;
use rdbench_gpu::plan::parse_kernel_signatures;

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Runs a kit compare kernel; returns the verdict words [nonce, checked, mismatches, first].
fn compare<B: KernelBackend>(
    dev: &B,
    kernel: &CheckedKernel<B>,
    want: &B::Buffer,
    got: &B::Buffer,
    n: i64,
    tol: Option<(f32, f32)>,
) -> Vec<u64> {
    let mut verdict = dev.alloc(32).unwrap();
    let init: Vec<u8> = [0xfeed_u64, 0, 0, u64::MAX]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    dev.upload(&init, &mut verdict).unwrap();
    let mut args = vec![Arg::Buffer(want), Arg::Buffer(got), Arg::I64(n)];
    if let Some((rtol, atol)) = tol {
        args.extend([Arg::F32(rtol), Arg::F32(atol)]);
    }
    args.push(Arg::Buffer(&verdict));
    kernel.launch(dev, Dims::grid_stride(n), &args).unwrap();
    words(&dev.download(&verdict).unwrap())
}

fn kit_comparisons<B: KernelBackend>(dev: &B) {
    let (module, _) = dev
        .compile(KIT_HARNESS, "kernels/harness/kit.cu", None)
        .unwrap();
    let sigs = parse_kernel_signatures(KIT_HARNESS);
    let k = |name: &str| CheckedKernel::new(dev, &module, &sigs, name).unwrap();
    let (cmp_f32, cmp_u32, fill) = (
        k("rdbench_compare_f32"),
        k("rdbench_compare_u32"),
        k("rdbench_fill_u32"),
    );

    // Floats: NaN never matches (not even NaN), equal infinities match, the tolerance holds.
    let want = [1.0f32, f32::NAN, f32::INFINITY, 100.0, 0.0, -5.0];
    let got = [1.0f32, f32::NAN, f32::INFINITY, 100.05, 1e-7, -5.1];
    let mut a = dev.alloc(24).unwrap();
    let mut b = dev.alloc(24).unwrap();
    dev.upload(&f32s(&want), &mut a).unwrap();
    dev.upload(&f32s(&got), &mut b).unwrap();
    let v = compare(dev, &cmp_f32, &a, &b, 6, Some((1e-3, 1e-6)));
    assert_eq!(v[0], 0xfeed, "the nonce is the host's");
    assert_eq!(v[1], 6, "every element checked");
    // Index 1 (NaN) and 5 (off by 2 %) are wrong; 3 is within rtol, 4 within atol.
    assert_eq!((v[2], v[3]), (2, 1), "{v:?}");
    let exact = compare(dev, &cmp_f32, &a, &a, 6, Some((0.0, 0.0)));
    assert_eq!(
        (exact[2], exact[3]),
        (1, 1),
        "NaN does not match itself: {exact:?}"
    );

    // Integers over many blocks: counts and the lowest wrong index.
    let n = 70_001i64;
    let x = dev.alloc(n as usize * 4).unwrap();
    let mut y = dev.alloc(n as usize * 4).unwrap();
    for buf in [&x, &y] {
        fill.launch(
            dev,
            Dims::grid_stride(n),
            &[Arg::Buffer(buf), Arg::I64(n), Arg::U32(0x4000_0007)],
        )
        .unwrap();
    }
    let v = compare(dev, &cmp_u32, &x, &y, n, None);
    assert_eq!((v[1], v[2], v[3]), (n as u64, 0, u64::MAX), "{v:?}");
    let mut bytes = dev.download(&y).unwrap();
    for i in [65_000usize, 40_000, 69_999] {
        bytes[4 * i] ^= 1;
    }
    dev.upload(&bytes, &mut y).unwrap();
    let v = compare(dev, &cmp_u32, &x, &y, n, None);
    assert_eq!((v[1], v[2], v[3]), (n as u64, 3, 40_000), "{v:?}");
}

/// bf16: compared as the f32s the bits stand for (NaN and infinity never match a finite
/// value), and poisoned through `rdbench_fill_u16` with the word's low half.
fn kit_bf16<B: KernelBackend>(dev: &B) {
    use rdbench_gpu::kernel_task::{bf16_to_f32, f32_to_bf16};
    let (module, _) = dev
        .compile(KIT_HARNESS, "kernels/harness/kit.cu", None)
        .unwrap();
    let sigs = parse_kernel_signatures(KIT_HARNESS);
    let k = |name: &str| CheckedKernel::new(dev, &module, &sigs, name).unwrap();
    let (cmp, fill) = (k("rdbench_compare_bf16"), k("rdbench_fill_u16"));
    let bits = |v: &[f32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| f32_to_bf16(*x).to_le_bytes())
            .collect()
    };
    // 1 + 2^-7 is one bf16 ulp above 1: inside rtol 2^-7, outside 2^-8.
    let want = [1.0f32, 2.0, 3.0, -0.5, 7.0];
    let got = [1.0078125f32, f32::NAN, f32::INFINITY, -0.5, 7.0];
    assert_eq!(bf16_to_f32(f32_to_bf16(got[0])), got[0]);
    let mut a = dev.alloc(10).unwrap();
    let mut b = dev.alloc(10).unwrap();
    dev.upload(&bits(&want), &mut a).unwrap();
    dev.upload(&bits(&got), &mut b).unwrap();
    let v = compare(dev, &cmp, &a, &b, 5, Some((1.0 / 128.0, 0.0)));
    assert_eq!(
        (v[1], v[2], v[3]),
        (5, 2, 1),
        "NaN and Inf are wrong: {v:?}"
    );
    let v = compare(dev, &cmp, &a, &b, 5, Some((1.0 / 256.0, 0.0)));
    assert_eq!((v[2], v[3]), (3, 0), "one ulp off at rtol 2^-8: {v:?}");

    // An odd count of 2-byte elements: every one gets the low half of the word.
    let n = 1001i64;
    let buf = dev.alloc(n as usize * 2).unwrap();
    fill.launch(
        dev,
        Dims::grid_stride(n),
        &[Arg::Buffer(&buf), Arg::I64(n), Arg::U32(0x1234_7fc1)],
    )
    .unwrap();
    let back = dev.download(&buf).unwrap();
    assert!(back[..2002]
        .chunks_exact(2)
        .all(|c| u16::from_le_bytes([c[0], c[1]]) == 0x7fc1));
    assert!(bf16_to_f32(0x7fc1).is_nan());
}

backend_test!(kit_compare_and_fill, kit_comparisons);
backend_test!(kit_bf16_compare_and_fill, kit_bf16);

fn checked_launches<B: KernelBackend>(dev: &B) {
    let src = r#"extern "C" __global__ void scale(const float* x, float* y, long long n, float a) {
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] = a * x[i]; }"#;
    let (module, _) = dev.compile(src, "scale.cu", None).unwrap();
    let sigs = parse_kernel_signatures(src);
    let scale = CheckedKernel::new(dev, &module, &sigs, "scale").unwrap();
    let mut x = dev.alloc(40).unwrap();
    let y = dev.alloc(40).unwrap();
    dev.upload(
        &f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]),
        &mut x,
    )
    .unwrap();
    scale
        .launch(
            dev,
            Dims::linear(1, 32),
            &[
                Arg::Buffer(&x),
                Arg::Buffer(&y),
                Arg::I64(10),
                Arg::F32(0.5),
            ],
        )
        .unwrap();
    assert_eq!(
        dev.download(&y).unwrap(),
        f32s(&[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0])
    );
    // The wrong scalar type for `float a` is refused before it reaches the device.
    let err = scale
        .launch(
            dev,
            Dims::linear(1, 32),
            &[Arg::Buffer(&x), Arg::Buffer(&y), Arg::I64(10), Arg::I32(1)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("argument 3"), "{err}");
    assert!(
        err.invalid_kind().is_none(),
        "a wiring mistake is the kit's, not a submission's"
    );
}

backend_test!(checked_launch_round_trip, checked_launches);
