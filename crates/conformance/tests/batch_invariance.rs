//! Bit-exact batch invariance on this CPU (armorm_conformance::invariance) for every head, dtype
//! and prompt-sharing setting. `ARMORM_CPU_KERNELS` caps the kernels a process uses, so
//! [`every_kernel_path_this_cpu_runs`] reruns it under each cap: an AMX CPU runs all three paths
//! (AMX tiles, AVX512-BF16 strips, f32), an AVX512-BF16 one two.

use armorm_conformance::fixtures::Fixtures;
use armorm_conformance::{caps, invariance};
use armorm_model::{ComputeDType, DeviceChoice, LoadOptions};

/// Runs under whatever `ARMORM_CPU_KERNELS` allows (all kernels unless the parent test capped it).
#[test]
fn bit_identical_alone_and_in_any_batch() {
    caps::print_kernels();
    for (run, result) in invariance::every(&Fixtures::repo(), DeviceChoice::Cpu, false) {
        let covered = result.unwrap_or_else(|e| panic!("{run}: {e:#}"));
        eprintln!("{run}: {} batches, {} sharing a prompt", covered.batches, covered.batches_sharing_a_prompt);
    }
}

/// `--batch-invariant` (each conversation computed alone, for GPUs) on one setting: the CPU runs
/// the path a GPU takes.
#[test]
fn computing_each_conversation_alone_is_invariant_too() {
    let options = LoadOptions { dtype: Some(ComputeDType::Bf16), batch_invariant: true, ..Default::default() };
    let covered = invariance::check(&Fixtures::repo(), invariance::HeadUnderTest::Armo, &options).unwrap();
    assert_eq!(covered.batches_sharing_a_prompt, 0, "nothing is shared when each is computed alone");
}

#[test]
fn every_kernel_path_this_cpu_runs() {
    caps::rerun_under_every_cap("bit_identical_alone_and_in_any_batch");
}
