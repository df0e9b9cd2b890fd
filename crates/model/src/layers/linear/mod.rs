//! y = x W^T (+ b) for the backbone's projections, with W stored (out, in) as in the checkpoint,
//! and the MLP's gate/up projection fused with its gated activation. bf16 on a CPU with AMX runs on the
//! tiles ([`amx`]), on one with AVX512-BF16 on `vdpbf16ps` over the stored rows ([`dot`]);
//! everything else is a candle matmul.

pub mod amx;
pub mod dot;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor};
use half::bf16;

use crate::error::Result;
use crate::kernels::matmul::{product, Out, View};
use crate::kernels::plan::KernelPlan;
use crate::kernels::simd::filled;
use crate::kernels::transpose::transpose_into;
use crate::layers::activation::{gated, Activation};
use crate::load::weights::{self, Weights};
use amx::{Epilogue, PackedWeight};
use dot::DotWeight;

/// y = x W^T (+ b), then the epilogue.
pub struct Linear {
    kernel: Kernel,
    /// Added to the product before the epilogue, in the compute dtype.
    bias: Option<Tensor>,
    /// What is left to apply after the kernel (and the bias): the epilogue, or `Plain` when the
    /// kernel applied it itself.
    after: Epilogue,
}

enum Kernel {
    /// Transposed and contiguous, so the matmul streams the weight row-major.
    Matmul(Tensor),
    /// Packed for the tiles, with its epilogue inside when there is no bias.
    Amx(PackedWeight),
    /// bf16 rows as stored (memory-mapped when the checkpoint is bf16), on `vdpbf16ps`.
    Dot(DotWeight),
}

/// Weight names (each with its output rows) read by one projection, and their biases if any.
pub struct Parts<'a> {
    pub weights: &'a [(String, usize)],
    pub biases: Option<&'a [String]>,
}

impl Linear {
    /// Concatenates several projections that read the same input (q/k/v) into one matmul, with
    /// their biases when given.
    pub fn load_fused(w: &Weights, parts: Parts, input: usize, dtype: DType, plan: KernelPlan) -> Result<Self> {
        Self::from_parts(w, parts, input, dtype, plan, Epilogue::Plain)
    }

    /// The MLP's gate and up projections (each `out` rows), whose output is act(gate) * up.
    pub fn load_gated(
        w: &Weights,
        parts: Parts,
        input: usize,
        dtype: DType,
        plan: KernelPlan,
        act: Activation,
    ) -> Result<Self> {
        Self::from_parts(w, parts, input, dtype, plan, Epilogue::Gated(act))
    }

    /// The dot-product kernel takes the stored rows as they are; the CPU matmul's weights are read
    /// straight into their transposed layout (one buffer, one pass); AMX packing and GPUs start
    /// from the stacked (out, in) weight. A bias keeps the epilogue out of the kernel, since it
    /// must be added before the activation.
    fn from_parts(
        w: &Weights,
        parts: Parts,
        input: usize,
        dtype: DType,
        plan: KernelPlan,
        epilogue: Epilogue,
    ) -> Result<Self> {
        let shapes: Vec<[usize; 2]> = parts.weights.iter().map(|(_, out)| [*out, input]).collect();
        let names: Vec<(&str, &[usize])> =
            parts.weights.iter().zip(&shapes).map(|((n, _), s)| (n.as_str(), &s[..])).collect();
        let bias = match parts.biases {
            Some(biases) => {
                let shapes: Vec<[usize; 1]> = parts.weights.iter().map(|(_, out)| [*out]).collect();
                let names: Vec<(&str, &[usize])> =
                    biases.iter().zip(&shapes).map(|(n, s)| (n.as_str(), &s[..])).collect();
                Some(w.get_stacked(&names, dtype)?)
            }
            None => None,
        };
        let inner = if bias.is_some() { Epilogue::Plain } else { epilogue };
        let kernel = match plan {
            KernelPlan::Avx512Bf16 => {
                let rows =
                    names.iter().map(|&(name, shape)| w.bf16_rows(name, shape[0], shape[1])).collect::<Result<_>>()?;
                match DotWeight::new(rows) {
                    Some(weight) => Kernel::Dot(weight),
                    None => Kernel::Matmul(w.get_stacked_transposed(&names, dtype)?),
                }
            }
            KernelPlan::CpuGemm => Kernel::Matmul(w.get_stacked_transposed(&names, dtype)?),
            KernelPlan::AmxTiles | KernelPlan::Gpu => Self::kernel(&w.get_stacked(&names, dtype)?, inner, plan)?,
        };
        Ok(Self::with(kernel, bias, epilogue))
    }

    /// From a weight (out, in) in the compute dtype, on its device, without a bias.
    pub fn new(weight: &Tensor, epilogue: Epilogue) -> Result<Self> {
        let plan = KernelPlan::choose(weight.device(), weight.dtype());
        Ok(Self::with(Self::kernel(weight, epilogue, plan)?, None, epilogue))
    }

    /// The AMX kernel applies its epilogue inside, before the product reaches memory, unless a
    /// bias must come first (it was then packed without one).
    fn with(kernel: Kernel, bias: Option<Tensor>, epilogue: Epilogue) -> Self {
        let after = match (&kernel, &bias) {
            (Kernel::Amx(_), None) => Epilogue::Plain,
            _ => epilogue,
        };
        Self { kernel, bias, after }
    }

    /// The plan's kernel for `weight`, or the plain product where the kernel does not take its
    /// shape (AMX needs multiples of 32).
    fn kernel(weight: &Tensor, epilogue: Epilogue, plan: KernelPlan) -> Result<Kernel> {
        let (out, input) = weight.dims2()?;
        let bf16_values = || weight.flatten_all()?.to_vec1::<bf16>();
        let kernel = match plan {
            KernelPlan::AmxTiles => PackedWeight::pack(&bf16_values()?, out, input, epilogue).map(Kernel::Amx),
            KernelPlan::Avx512Bf16 => {
                DotWeight::new(vec![weights::Bf16Rows::owned(bf16_values()?, out, input)]).map(Kernel::Dot)
            }
            KernelPlan::CpuGemm | KernelPlan::Gpu => None,
        };
        match kernel {
            Some(kernel) => Ok(kernel),
            None => Ok(Kernel::Matmul(transposed(weight)?)),
        }
    }

    /// (tokens, in) -> (tokens, out), or (tokens, out / 2) after a gated activation
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let product = match &self.kernel {
            Kernel::Matmul(weight_t) => matmul(x, weight_t)?,
            Kernel::Amx(packed) => x.apply_op1_no_bwd(&Bf16Kernel::Amx(packed))?,
            Kernel::Dot(weight) => x.apply_op1_no_bwd(&Bf16Kernel::Dot(weight))?,
        };
        let product = match &self.bias {
            Some(bias) => product.broadcast_add(bias)?,
            None => product,
        };
        epilogue_of(product, self.after)
    }
}

/// x (m, k) times w_t (k, n); on the CPU each row is the same bits whatever the other rows, which
/// the heads need as much as the backbone: in f32 by construction ([`crate::kernels::matmul`]); in
/// f16/bf16 the gemm crate's blocked kernel splits k by k and the cache alone, but a single row
/// takes its gemv path, which sums in another order, so one row is computed as two.
pub fn matmul(x: &Tensor, w_t: &Tensor) -> Result<Tensor> {
    Ok(match (x.device(), x.dtype()) {
        (Device::Cpu, DType::F32) => x.contiguous()?.apply_op2_no_bwd(&w_t.contiguous()?, &CpuGemm)?,
        (Device::Cpu, _) if x.dim(0)? == 1 => Tensor::cat(&[x, x], 0)?.matmul(w_t)?.narrow(0, 0, 1)?,
        _ => x.matmul(w_t)?,
    })
}

/// A full (tokens, out) product after its epilogue.
fn epilogue_of(product: Tensor, epilogue: Epilogue) -> Result<Tensor> {
    Ok(match epilogue {
        Epilogue::Plain => product,
        Epilogue::Gated(act) => gated(&product, act)?,
    })
}

/// (rows, cols) -> (cols, rows), contiguous: on the CPU through the blocked parallel transpose
/// (candle's strided copy goes one element at a time on one thread).
fn transposed(weight: &Tensor) -> Result<Tensor> {
    let (rows, cols) = weight.dims2()?;
    fn blocked<T: Copy + Send + Sync + candle_core::WithDType>(w: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        let w = w.contiguous()?;
        let (storage, layout) = w.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Err(candle_core::Error::Msg("transposing a non-CPU tensor on the CPU".into()).into());
        };
        let src = &T::cpu_storage_as_slice(cpu)?[layout.start_offset()..][..rows * cols];
        // SAFETY: one source of `rows` rows fills all `rows` columns of the output.
        let dst = unsafe { filled(rows * cols, |out| transpose_into(src, rows, cols, out, rows, 0, |x| x)) };
        drop(storage);
        Ok(Tensor::from_vec(dst, (cols, rows), w.device())?)
    }
    match (weight.device(), weight.dtype()) {
        (Device::Cpu, DType::F32) => blocked::<f32>(weight, rows, cols),
        (Device::Cpu, DType::BF16) => blocked::<bf16>(weight, rows, cols),
        (Device::Cpu, DType::F16) => blocked::<half::f16>(weight, rows, cols),
        _ => Ok(weight.t()?.contiguous()?),
    }
}

/// An f32 product on the CPU through the gemm crate, as candle's matmul does, but into an output
/// that is not zero-filled first (that fill, and faulting its pages in, was 5-8% of the f32
/// forward).
struct CpuGemm;

impl CustomOp2 for CpuGemm {
    fn name(&self) -> &'static str {
        "cpu-f32-gemm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((m, k), (k2, n)) = (xl.shape().dims2()?, wl.shape().dims2()?);
        let (CpuStorage::F32(x), CpuStorage::F32(w), Some((x0, _)), Some((w0, _))) =
            (x, w, xl.contiguous_offsets(), wl.contiguous_offsets())
        else {
            candle_core::bail!("cpu gemm needs contiguous f32 operands")
        };
        if k != k2 {
            candle_core::bail!("cpu gemm: ({m}, {k}) x ({k2}, {n})")
        }
        let (x, w) = (&x[x0..][..m * k], &w[w0..][..k * n]);
        let (lhs, rhs) = (View::row_major(x, m, k), View::row_major(w, k, n));
        let threads = rayon::current_num_threads();
        // SAFETY: `product` writes every element of the (m, n) output.
        let out = unsafe { filled(m * n, |out| product(Out::Overwrite(out), lhs, rhs, threads)) };
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// The bf16 CPU kernels, behind one candle op.
#[derive(Clone, Copy)]
enum Bf16Kernel<'a> {
    Amx(&'a PackedWeight),
    Dot(&'a DotWeight),
}

impl CustomOp1 for Bf16Kernel<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Amx(_) => "amx-bf16-matmul",
            Self::Dot(_) => "dot-bf16-matmul",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = layout.shape().dims2()?;
        let (CpuStorage::BF16(x), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("{} needs a contiguous bf16 input, got {:?}", self.name(), storage.dtype())
        };
        let (input, out) = match self {
            Self::Amx(w) => (w.in_features(), w.out_features()),
            Self::Dot(w) => (w.in_features(), w.out_features()),
        };
        if k != input {
            candle_core::bail!("{}: the input has {k} features, the weight {input}", self.name())
        }
        let x = &x[start..end];
        let y = match self {
            Self::Amx(w) => w.matmul(x, m),
            Self::Dot(w) => w.matmul(x, m),
        };
        Ok((CpuStorage::BF16(y), Shape::from((m, out))))
    }
}
