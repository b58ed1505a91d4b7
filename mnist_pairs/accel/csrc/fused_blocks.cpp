// Fused training-mode encoder blocks for channels_last float32 or bfloat16 tensors on the CPU (fused.py).
//
//   BatchNorm2d -> ReLU -> MaxPool2d(2)         bn_relu_maxpool_{forward,backward}
//   BatchNorm2d -> ReLU -> AdaptiveAvgPool2d(1) bn_relu_avgpool_{forward,backward}
//
// The same arithmetic as the three modules, in fewer passes over the (B,C,H,W) activation, which
// on a 2-core CPU is bound by memory, not by arithmetic. The max-pool block pools the
// pre-normalisation values: BatchNorm's per-channel affine map is monotone (increasing where
// weight * invstd > 0, decreasing where < 0, so those channels pool the minimum) and ReLU is
// monotone, so pooling first picks the same element. Its backward writes the input gradient
// in one pass: BatchNorm's gradient is a*dz + b + c*y per channel, with dz non-zero only at
// the pooled elements. Statistics are summed in float within a sample, in double across samples.
// bfloat16 tensors (bf16 autocast) are read and written as bfloat16 and computed in float, as the
// modules do; parameters, statistics and their gradients are float32.
// ATen and the operator registry only: no pybind11 and no C++ frontend, so a fresh build takes about
// 10 s instead of 26 s. Python calls the kernels as torch.ops.mnist_pairs_fused.<name>.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using bf16 = c10::BFloat16;

// float <-> storage type, written as plain integer arithmetic so the channel loops vectorise
inline float to_f(float x) { return x; }
inline float to_f(bf16 x) { return std::bit_cast<float>(static_cast<uint32_t>(x.x) << 16); }
template <class T> inline T from_f(float f);
template <> inline float from_f<float>(float f) { return f; }
template <> inline bf16 from_f<bf16>(float f) {  // round to nearest even; NaN stays NaN
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t r = f != f ? 0x7FC00000u : u + 0x7FFFu + ((u >> 16) & 1u);
  return bf16(static_cast<uint16_t>(r >> 16), bf16::from_bits());
}

void check(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16), what,
              " must be a float32 or bfloat16 CPU tensor");
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast), what,
              " must be 4-d and channels_last");
}

template <class F>
void dispatch(const at::Tensor& y, F&& f) {
  if (y.scalar_type() == at::kBFloat16) f(bf16{});
  else f(float{});
}

// Two per-channel sums over a batch: `sample(b, x1, x2)` adds sample b's terms to zeroed float
// arrays of C values; samples are added up in double per thread, then the threads in order.
template <class F>
std::pair<std::vector<double>, std::vector<double>> sample_sums(int64_t B, int64_t C, F&& sample) {
  const int nt = at::get_num_threads();
  std::vector<double> s1(nt * C, 0.0), s2(nt * C, 0.0);
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    double* __restrict__ a1 = s1.data() + at::get_thread_num() * C;
    double* __restrict__ a2 = s2.data() + at::get_thread_num() * C;
    std::vector<float> f1(C), f2(C);
    for (int64_t b = lo; b < hi; ++b) {
      std::fill(f1.begin(), f1.end(), 0.f);
      std::fill(f2.begin(), f2.end(), 0.f);
      sample(b, f1.data(), f2.data());
      for (int64_t c = 0; c < C; ++c) { a1[c] += f1[c]; a2[c] += f2[c]; }
    }
  });
  std::vector<double> t1(C, 0.0), t2(C, 0.0);
  for (int t = 0; t < nt; ++t)
    for (int64_t c = 0; c < C; ++c) { t1[c] += s1[t * C + c]; t2[c] += s2[t * C + c]; }
  return {t1, t2};
}

// One sample's sums of y and y*y per channel (HW rows of C values).
template <class T>
inline void moment_sums(const T* __restrict__ p, int64_t HW, float* __restrict__ s, float* __restrict__ q,
                        int64_t C) {
  for (int64_t i = 0; i < HW; ++i) {
    const T* __restrict__ row = p + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const float v = to_f(row[c]);
      s[c] += v;
      q[c] += v * v;
    }
  }
}

// Per-channel mean and biased variance of a channels_last (B,C,H,W) tensor: B*H*W rows of C values.
template <class T>
std::pair<at::Tensor, at::Tensor> channel_stats(const at::Tensor& y) {
  const int64_t B = y.size(0), C = y.size(1), HW = y.size(2) * y.size(3), rows = B * HW;
  const T* y_ = y.data_ptr<T>();
  auto [sum, sq] = sample_sums(B, C, [&](int64_t b, float* s, float* q) { moment_sums<T>(y_ + b * HW * C, HW, s, q, C); });
  auto opts = y.options().dtype(at::kFloat);
  auto mean = at::empty({C}, opts), var = at::empty({C}, opts);
  float *m = mean.template data_ptr<float>(), *v = var.template data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double mu = sum[c] / rows;
    m[c] = static_cast<float>(mu);
    v[c] = static_cast<float>(std::max(sq[c] / rows - mu * mu, 0.0));
  }
  return {mean, var};
}

// One 2x2 window, every channel: the element that BatchNorm maps highest (the largest y, the
// smallest where scale < 0, the first where scale = 0; the first of equal ones and NaN wins, as
// MaxPool2d), its y, its position and relu(scale * y + shift).
template <class T>
inline void pool_window(const T* __restrict__ q0, const T* __restrict__ q1, const T* __restrict__ q2,
                        const T* __restrict__ q3, const float* __restrict__ sg, const float* __restrict__ sc,
                        const float* __restrict__ sh, T* __restrict__ pm, T* __restrict__ pz,
                        int32_t* __restrict__ pa, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const float s = sg[c];
    float best = s * to_f(q0[c]), v;
    int32_t k = 0;
    bool up;
    v = s * to_f(q1[c]); up = v > best || v != v; k = up ? 1 : k; best = up ? v : best;
    v = s * to_f(q2[c]); up = v > best || v != v; k = up ? 2 : k; best = up ? v : best;
    v = s * to_f(q3[c]); up = v > best || v != v; k = up ? 3 : k; best = up ? v : best;
    // the chosen element itself (s * best is it too when s = +-1, but not when s = 0)
    const float yv = to_f((k == 0 ? q0 : k == 1 ? q1 : k == 2 ? q2 : q3)[c]);
    pm[c] = from_f<T>(yv);
    pa[c] = k;
    pz[c] = from_f<T>(std::max(yv * sc[c] + sh[c], 0.f));
  }
}

// Sums over one sample's rows of dz = g where relu(scale * y + shift) > 0, and of dz * yhat.
template <class T>
inline void avgpool_grad_sums(const T* __restrict__ p, int64_t HW, const float* __restrict__ g,
                              const float* __restrict__ sc, const float* __restrict__ sh, const float* __restrict__ mean,
                              const float* __restrict__ invstd, float* __restrict__ x1, float* __restrict__ x2,
                              int64_t C) {
  for (int64_t i = 0; i < HW; ++i) {
    const T* __restrict__ row = p + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const float y = to_f(row[c]);
      const float dz = y * sc[c] + sh[c] > 0.f ? g[c] : 0.f;
      x1[c] += dz;
      x2[c] += dz * ((y - mean[c]) * invstd[c]);
    }
  }
}

template <class T>
std::vector<at::Tensor> maxpool_forward(const at::Tensor& y, const at::Tensor& weight, const at::Tensor& bias,
                                        double eps) {
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), Ho = H / 2, Wo = W / 2;
  at::Tensor mean, var;
  std::tie(mean, var) = channel_stats<T>(y);
  auto scale = (weight * at::rsqrt(var + eps)).contiguous();
  auto shift = (bias - mean * scale).contiguous();
  auto sign = at::sign(scale).to(at::kFloat).contiguous();  // -1, 0 or +1 per channel
  auto cl = at::MemoryFormat::ChannelsLast;
  auto z = at::empty({B, C, Ho, Wo}, y.options().memory_format(cl));
  auto ym = at::empty({B, C, Ho, Wo}, y.options().memory_format(cl));
  auto arg = at::empty({B, C, Ho, Wo}, y.options().dtype(at::kInt).memory_format(cl));
  const T* y_ = y.data_ptr<T>();
  const float *sc_ = scale.data_ptr<float>(), *sh_ = shift.data_ptr<float>(), *sg_ = sign.data_ptr<float>();
  T *z_ = z.data_ptr<T>(), *ym_ = ym.data_ptr<T>();
  int32_t* arg_ = arg.data_ptr<int32_t>();
  at::parallel_for(0, B * Ho, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / Ho, oh = r % Ho;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const T* q0 = y_ + ((b * H + 2 * oh) * W + 2 * ow) * C;
        const int64_t o = (r * Wo + ow) * C;
        pool_window<T>(q0, q0 + C, q0 + W * C, q0 + W * C + C, sg_, sc_, sh_, ym_ + o, z_ + o, arg_ + o, C);
      }
    }
  });
  return {z, ym, arg, mean, var};
}

template <class T>
std::vector<at::Tensor> maxpool_backward(const at::Tensor& dz_in, const at::Tensor& z, const at::Tensor& ym,
                                         const at::Tensor& arg, const at::Tensor& y, const at::Tensor& mean,
                                         const at::Tensor& var, const at::Tensor& weight, double eps) {
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), Ho = H / 2, Wo = W / 2;
  const int64_t n = B * H * W;
  auto invstd = at::rsqrt(var + eps);
  auto v = [C](const at::Tensor& t) { return t.view({1, C, 1, 1}); };
  // g = dz where z > 0: the gradient reaching BatchNorm's output at the pooled elements (zero elsewhere)
  const at::Tensor g = dz_in.to(at::kFloat) * (z > 0);
  const at::Tensor dbias = g.sum({0, 2, 3});
  const at::Tensor dweight = (g * (ym.to(at::kFloat) - v(mean)) * v(invstd)).sum({0, 2, 3});
  // dL/dy = a*g (pooled elements only) + b + c*y, per channel
  const at::Tensor a = weight * invstd;
  const at::Tensor cc = (-a * invstd * dweight / n).contiguous();
  const at::Tensor bb = (-a * dbias / n - cc * mean).contiguous();
  const at::Tensor ag = (g * v(a)).contiguous(at::MemoryFormat::ChannelsLast);
  auto dy = at::empty_like(y, y.options().memory_format(at::MemoryFormat::ChannelsLast));
  const T* y_ = y.data_ptr<T>();
  const float *cc_ = cc.data_ptr<float>(), *bb_ = bb.data_ptr<float>(), *ag_ = ag.data_ptr<float>();
  const int32_t* arg_ = arg.data_ptr<int32_t>();
  T* dy_ = dy.data_ptr<T>();
  at::parallel_for(0, B * Ho, 1, [&](int64_t lo, int64_t hi) {
    const float *__restrict__ pc = cc_, *__restrict__ pb = bb_;
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / Ho, oh = r % Ho;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t base = ((b * H + 2 * oh) * W + 2 * ow) * C, o = (r * Wo + ow) * C;
        const int64_t off[4] = {base, base + C, base + W * C, base + W * C + C};
        const float* __restrict__ gj = ag_ + o;
        const int32_t* __restrict__ kj = arg_ + o;
        for (int32_t j = 0; j < 4; ++j) {
          const T* __restrict__ yj = y_ + off[j];
          T* __restrict__ dj = dy_ + off[j];
          for (int64_t c = 0; c < C; ++c)
            dj[c] = from_f<T>(to_f(yj[c]) * pc[c] + pb[c] + (kj[c] == j ? gj[c] : 0.f));
        }
      }
    }
  });
  return {dy, dweight, dbias};
}

template <class T>
std::vector<at::Tensor> avgpool_forward(const at::Tensor& y, const at::Tensor& weight, const at::Tensor& bias,
                                        double eps) {
  const int64_t B = y.size(0), C = y.size(1), HW = y.size(2) * y.size(3);
  at::Tensor mean, var;
  std::tie(mean, var) = channel_stats<T>(y);
  auto scale = (weight * at::rsqrt(var + eps)).contiguous();
  auto shift = (bias - mean * scale).contiguous();
  auto out = at::empty({B, C, 1, 1}, y.options());
  const T* y_ = y.data_ptr<T>();
  const float *sc_ = scale.data_ptr<float>(), *sh_ = shift.data_ptr<float>();
  T* out_ = out.data_ptr<T>();
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    const T* __restrict__ p = y_;
    const float *__restrict__ sc = sc_, *__restrict__ sh = sh_;
    std::vector<float> buf(C);
    float* __restrict__ acc = buf.data();
    for (int64_t b = lo; b < hi; ++b) {
      std::fill(buf.begin(), buf.end(), 0.f);
      for (int64_t i = 0; i < HW; ++i) {
        const T* __restrict__ row = p + (b * HW + i) * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += std::max(to_f(row[c]) * sc[c] + sh[c], 0.f);
      }
      for (int64_t c = 0; c < C; ++c) out_[b * C + c] = from_f<T>(acc[c] / HW);
    }
  });
  return {out, mean, var};
}

template <class T>
std::vector<at::Tensor> avgpool_backward(const at::Tensor& dout, const at::Tensor& y, const at::Tensor& mean,
                                         const at::Tensor& var, const at::Tensor& weight, const at::Tensor& bias,
                                         double eps) {
  const int64_t B = y.size(0), C = y.size(1), HW = y.size(2) * y.size(3), n = B * HW;
  auto invstd = at::rsqrt(var + eps);
  auto scale = (weight * invstd).contiguous();
  auto shift = (bias - mean * scale).contiguous();
  // dz = dout/HW where BatchNorm's output is > 0; sums of dz and dz*yhat per channel
  auto gd = (dout.to(at::kFloat).reshape({B, C}) / static_cast<double>(HW)).contiguous();
  const T* y_ = y.data_ptr<T>();
  const float *sc_ = scale.data_ptr<float>(), *sh_ = shift.data_ptr<float>(), *gd_ = gd.data_ptr<float>();
  const float *mean_ = mean.data_ptr<float>(), *invstd_ = invstd.data_ptr<float>();
  auto [s1, s2] = sample_sums(B, C, [&](int64_t b, float* x1, float* x2) {
    avgpool_grad_sums<T>(y_ + b * HW * C, HW, gd_ + b * C, sc_, sh_, mean_, invstd_, x1, x2, C);
  });
  auto opts = y.options().dtype(at::kFloat);
  auto dbias = at::empty({C}, opts), dweight = at::empty({C}, opts);
  float *db = dbias.data_ptr<float>(), *dw = dweight.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    db[c] = static_cast<float>(s1[c]);
    dw[c] = static_cast<float>(s2[c]);
  }
  auto a = (weight * invstd).contiguous();
  auto cc = (-a * invstd * dweight / n).contiguous();
  auto bb = (-a * dbias / n - cc * mean).contiguous();
  const float *a_ = a.data_ptr<float>(), *cc_ = cc.data_ptr<float>(), *bb_ = bb.data_ptr<float>();
  auto dy = at::empty_like(y, y.options().memory_format(at::MemoryFormat::ChannelsLast));
  T* dy_ = dy.data_ptr<T>();
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    const T* __restrict__ p = y_;
    const float *__restrict__ sc = sc_, *__restrict__ sh = sh_, *__restrict__ pa = a_, *__restrict__ pc = cc_,
                *__restrict__ pb = bb_;
    T* __restrict__ d = dy_;
    for (int64_t b = lo; b < hi; ++b) {
      const float* __restrict__ g = gd_ + b * C;
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t o = (b * HW + i) * C;
        for (int64_t c = 0; c < C; ++c) {
          const float yv = to_f(p[o + c]);
          const float dz = yv * sc[c] + sh[c] > 0.f ? g[c] : 0.f;
          d[o + c] = from_f<T>(pa[c] * dz + yv * pc[c] + pb[c]);
        }
      }
    }
  });
  return {dy, dweight, dbias};
}

}  // namespace

// -> (z, y at the pooled element, which of the 2x2 elements (0..3), mean, biased var)
std::vector<at::Tensor> bn_relu_maxpool_forward(const at::Tensor& y, const at::Tensor& weight,
                                                const at::Tensor& bias, double eps) {
  check(y, "input");
  TORCH_CHECK(y.size(2) % 2 == 0 && y.size(3) % 2 == 0, "height and width must be even");
  std::vector<at::Tensor> out;
  dispatch(y, [&](auto t) { out = maxpool_forward<decltype(t)>(y, weight, bias, eps); });
  return out;
}

// -> (dL/dy, dL/dweight, dL/dbias)
std::vector<at::Tensor> bn_relu_maxpool_backward(const at::Tensor& dz, const at::Tensor& z, const at::Tensor& ym,
                                                 const at::Tensor& arg, const at::Tensor& y, const at::Tensor& mean,
                                                 const at::Tensor& var, const at::Tensor& weight, double eps) {
  check(y, "input");
  std::vector<at::Tensor> out;
  dispatch(y, [&](auto t) { out = maxpool_backward<decltype(t)>(dz, z, ym, arg, y, mean, var, weight, eps); });
  return out;
}

// -> (pooled (B,C,1,1), mean, biased var)
std::vector<at::Tensor> bn_relu_avgpool_forward(const at::Tensor& y, const at::Tensor& weight,
                                                const at::Tensor& bias, double eps) {
  check(y, "input");
  std::vector<at::Tensor> out;
  dispatch(y, [&](auto t) { out = avgpool_forward<decltype(t)>(y, weight, bias, eps); });
  return out;
}

// -> (dL/dy, dL/dweight, dL/dbias)
std::vector<at::Tensor> bn_relu_avgpool_backward(const at::Tensor& dout, const at::Tensor& y, const at::Tensor& mean,
                                                 const at::Tensor& var, const at::Tensor& weight,
                                                 const at::Tensor& bias, double eps) {
  check(y, "input");
  std::vector<at::Tensor> out;
  dispatch(y, [&](auto t) { out = avgpool_backward<decltype(t)>(dout, y, mean, var, weight, bias, eps); });
  return out;
}

TORCH_LIBRARY(mnist_pairs_fused, m) {
  m.def("bn_relu_maxpool_forward", &bn_relu_maxpool_forward);
  m.def("bn_relu_maxpool_backward", &bn_relu_maxpool_backward);
  m.def("bn_relu_avgpool_forward", &bn_relu_avgpool_forward);
  m.def("bn_relu_avgpool_backward", &bn_relu_avgpool_backward);
}
