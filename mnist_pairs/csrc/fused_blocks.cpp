// Fused training-mode encoder blocks for float32 channels_last tensors on the CPU (fused.py).
//
//   BatchNorm2d -> ReLU -> MaxPool2d(2)        bn_relu_maxpool_{forward,backward}
//   BatchNorm2d -> ReLU -> AdaptiveAvgPool2d(1) bn_relu_avgpool_{forward,backward}
//
// The same arithmetic as the three modules, in fewer passes over the (B,C,H,W) activation, which
// on a 2-core CPU is bound by memory, not by arithmetic. The max-pool block pools the
// pre-normalisation values: BatchNorm's per-channel affine map is monotone (increasing where
// weight * invstd > 0, decreasing where < 0, so those channels pool the minimum) and ReLU is
// monotone, so pooling first picks the same element. Its backward writes the input gradient
// in one pass: BatchNorm's gradient is a*dz + b + c*y per channel, with dz non-zero only at
// the pooled elements. Statistics are summed in double, per thread, then combined.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

void check(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, what, " must be a float32 CPU tensor");
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast), what,
              " must be 4-d and channels_last");
}

// Per-channel mean and biased variance of a channels_last (B,C,H,W) tensor: B*H*W rows of C
// values. Each sample's rows are summed in float (vectorised over channels), samples in double.
std::pair<at::Tensor, at::Tensor> channel_stats(const at::Tensor& y) {
  const int64_t B = y.size(0), C = y.size(1), HW = y.size(2) * y.size(3);
  const float* y_ = y.data_ptr<float>();
  const int nt = at::get_num_threads();
  std::vector<double> sum(nt * C, 0.0), sq(nt * C, 0.0);
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    const float* __restrict__ p = y_;
    double* __restrict__ s = sum.data() + at::get_thread_num() * C;
    double* __restrict__ q = sq.data() + at::get_thread_num() * C;
    std::vector<float> fs(C), fq(C);
    for (int64_t b = lo; b < hi; ++b) {
      std::fill(fs.begin(), fs.end(), 0.f);
      std::fill(fq.begin(), fq.end(), 0.f);
      float* __restrict__ s1 = fs.data();
      float* __restrict__ q1 = fq.data();
      for (int64_t i = 0; i < HW; ++i) {
        const float* __restrict__ row = p + (b * HW + i) * C;
        for (int64_t c = 0; c < C; ++c) {
          s1[c] += row[c];
          q1[c] += row[c] * row[c];
        }
      }
      for (int64_t c = 0; c < C; ++c) { s[c] += s1[c]; q[c] += q1[c]; }
    }
  });
  const int64_t rows = B * HW;
  auto mean = at::empty({C}, y.options()), var = at::empty({C}, y.options());
  float *m = mean.data_ptr<float>(), *v = var.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, q = 0;
    for (int t = 0; t < nt; ++t) { s += sum[t * C + c]; q += sq[t * C + c]; }
    const double mu = s / rows;
    m[c] = static_cast<float>(mu);
    v[c] = static_cast<float>(std::max(q / rows - mu * mu, 0.0));
  }
  return {mean, var};
}

// One 2x2 window, every channel: the element that BatchNorm maps highest (the largest y, or the
// smallest where scale < 0; the first of equal ones and NaN wins, as MaxPool2d), its y, its
// position and relu(scale * y + shift).
inline void pool_window(const float* __restrict__ q0, const float* __restrict__ q1, const float* __restrict__ q2,
                        const float* __restrict__ q3, const float* __restrict__ sg, const float* __restrict__ sc,
                        const float* __restrict__ sh, float* __restrict__ pm, float* __restrict__ pz,
                        int32_t* __restrict__ pa, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const float s = sg[c];
    float best = s * q0[c], v;
    int32_t k = 0;
    bool up;
    v = s * q1[c]; up = v > best || v != v; k = up ? 1 : k; best = up ? v : best;
    v = s * q2[c]; up = v > best || v != v; k = up ? 2 : k; best = up ? v : best;
    v = s * q3[c]; up = v > best || v != v; k = up ? 3 : k; best = up ? v : best;
    const float yv = s * best;
    pm[c] = yv;
    pa[c] = k;
    pz[c] = std::max(yv * sc[c] + sh[c], 0.f);
  }
}

// Sums over one sample's rows of dz = g where relu(scale * y + shift) > 0, and of dz * yhat.
inline void avgpool_grad_sums(const float* __restrict__ p, int64_t HW, const float* __restrict__ g,
                              const float* __restrict__ sc, const float* __restrict__ sh, const float* __restrict__ mean,
                              const float* __restrict__ invstd, float* __restrict__ x1, float* __restrict__ x2,
                              int64_t C) {
  for (int64_t i = 0; i < HW; ++i) {
    const float* __restrict__ row = p + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const float dz = row[c] * sc[c] + sh[c] > 0.f ? g[c] : 0.f;
      x1[c] += dz;
      x2[c] += dz * ((row[c] - mean[c]) * invstd[c]);
    }
  }
}

}  // namespace

// -> (z, y at the pooled element, which of the 2x2 elements (0..3), mean, biased var)
std::vector<at::Tensor> bn_relu_maxpool_forward(const at::Tensor& y, const at::Tensor& weight,
                                                const at::Tensor& bias, double eps) {
  check(y, "input");
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), Ho = H / 2, Wo = W / 2;
  TORCH_CHECK(H % 2 == 0 && W % 2 == 0, "height and width must be even");
  auto [mean, var] = channel_stats(y);
  auto scale = (weight * at::rsqrt(var + eps)).contiguous();
  auto shift = (bias - mean * scale).contiguous();
  auto sign = at::where(scale < 0, -1.0, 1.0).to(at::kFloat).contiguous();
  auto cl = at::MemoryFormat::ChannelsLast;
  auto z = at::empty({B, C, Ho, Wo}, y.options().memory_format(cl));
  auto ym = at::empty({B, C, Ho, Wo}, y.options().memory_format(cl));
  auto arg = at::empty({B, C, Ho, Wo}, y.options().dtype(at::kInt).memory_format(cl));
  const float *y_ = y.data_ptr<float>(), *sc_ = scale.data_ptr<float>(), *sh_ = shift.data_ptr<float>(),
              *sg_ = sign.data_ptr<float>();
  float *z_ = z.data_ptr<float>(), *ym_ = ym.data_ptr<float>();
  int32_t* arg_ = arg.data_ptr<int32_t>();
  at::parallel_for(0, B * Ho, 1, [&](int64_t lo, int64_t hi) {
    // local restrict pointers: the compiler then vectorises the channel loops
    const float *__restrict__ p = y_, *__restrict__ sc = sc_, *__restrict__ sh = sh_, *__restrict__ sg = sg_;
    float *__restrict__ pz = z_, *__restrict__ pm = ym_;
    int32_t* __restrict__ pa = arg_;
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / Ho, oh = r % Ho;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const float *__restrict__ q0 = p + ((b * H + 2 * oh) * W + 2 * ow) * C, *__restrict__ q1 = q0 + C,
                    *__restrict__ q2 = q0 + W * C, *__restrict__ q3 = q2 + C;
        const int64_t o = (r * Wo + ow) * C;
        pool_window(q0, q1, q2, q3, sg, sc, sh, pm + o, pz + o, pa + o, C);
      }
    }
  });
  return {z, ym, arg, mean, var};
}

// -> (dL/dy, dL/dweight, dL/dbias)
std::vector<at::Tensor> bn_relu_maxpool_backward(const at::Tensor& dz_in, const at::Tensor& z, const at::Tensor& ym,
                                                 const at::Tensor& arg, const at::Tensor& y, const at::Tensor& mean,
                                                 const at::Tensor& var, const at::Tensor& weight, double eps) {
  check(y, "input");
  auto dz = dz_in.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), Ho = H / 2, Wo = W / 2;
  const int64_t n = B * H * W;
  auto invstd = at::rsqrt(var + eps);
  // g = dz where z > 0: the gradient reaching BatchNorm's output at the pooled elements (zero elsewhere)
  auto g = dz * (z > 0);
  auto dbias = g.sum({0, 2, 3});
  auto dweight = (g * (ym - mean.view({1, C, 1, 1})) * invstd.view({1, C, 1, 1})).sum({0, 2, 3});
  // dL/dy = a*g (pooled elements only) + b + c*y, per channel
  auto a = (weight * invstd).contiguous();
  auto cc = (-a * invstd * dweight / n).contiguous();
  auto bb = (-a * dbias / n - cc * mean).contiguous();
  auto ag = (g * a.view({1, C, 1, 1})).contiguous(at::MemoryFormat::ChannelsLast);
  auto dy = at::empty_like(y, y.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float *y_ = y.data_ptr<float>(), *cc_ = cc.data_ptr<float>(), *bb_ = bb.data_ptr<float>(),
              *ag_ = ag.data_ptr<float>();
  const int32_t* arg_ = arg.data_ptr<int32_t>();
  float* dy_ = dy.data_ptr<float>();
  at::parallel_for(0, B * Ho, 1, [&](int64_t lo, int64_t hi) {
    const float *__restrict__ p = y_, *__restrict__ pc = cc_, *__restrict__ pb = bb_, *__restrict__ pg = ag_;
    const int32_t* __restrict__ pa = arg_;
    float* __restrict__ d = dy_;
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / Ho, oh = r % Ho;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t base = ((b * H + 2 * oh) * W + 2 * ow) * C, o = (r * Wo + ow) * C;
        const int64_t off[4] = {base, base + C, base + W * C, base + W * C + C};
        for (int32_t j = 0; j < 4; ++j) {
          const float* __restrict__ yj = p + off[j];
          const float* __restrict__ gj = pg + o;
          const int32_t* __restrict__ kj = pa + o;
          float* __restrict__ dj = d + off[j];
          for (int64_t c = 0; c < C; ++c) dj[c] = yj[c] * pc[c] + pb[c] + (kj[c] == j ? gj[c] : 0.f);
        }
      }
    }
  });
  return {dy, dweight, dbias};
}

// -> (pooled (B,C,1,1), mean, biased var)
std::vector<at::Tensor> bn_relu_avgpool_forward(const at::Tensor& y, const at::Tensor& weight,
                                                const at::Tensor& bias, double eps) {
  check(y, "input");
  const int64_t B = y.size(0), C = y.size(1), HW = y.size(2) * y.size(3);
  auto [mean, var] = channel_stats(y);
  auto scale = (weight * at::rsqrt(var + eps)).contiguous();
  auto shift = (bias - mean * scale).contiguous();
  auto out = at::empty({B, C, 1, 1}, y.options());
  const float *y_ = y.data_ptr<float>(), *sc_ = scale.data_ptr<float>(), *sh_ = shift.data_ptr<float>();
  float* out_ = out.data_ptr<float>();
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    const float *__restrict__ p = y_, *__restrict__ sc = sc_, *__restrict__ sh = sh_;
    float* __restrict__ po = out_;
    std::vector<float> acc(C);
    for (int64_t b = lo; b < hi; ++b) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t i = 0; i < HW; ++i) {
        const float* row = p + (b * HW + i) * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += std::max(row[c] * sc[c] + sh[c], 0.f);
      }
      for (int64_t c = 0; c < C; ++c) po[b * C + c] = acc[c] / HW;
    }
  });
  return {out, mean, var};
}

// -> (dL/dy, dL/dweight, dL/dbias)
std::vector<at::Tensor> bn_relu_avgpool_backward(const at::Tensor& dout_in, const at::Tensor& y, const at::Tensor& mean,
                                                 const at::Tensor& var, const at::Tensor& weight,
                                                 const at::Tensor& bias, double eps) {
  check(y, "input");
  auto dout = dout_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), HW = y.size(2) * y.size(3), n = B * HW;
  auto invstd = at::rsqrt(var + eps);
  auto scale = (weight * invstd).contiguous();
  auto shift = (bias - mean * scale).contiguous();
  const float *y_ = y.data_ptr<float>(), *sc_ = scale.data_ptr<float>(), *sh_ = shift.data_ptr<float>();
  const float *mean_ = mean.data_ptr<float>(), *invstd_ = invstd.data_ptr<float>();
  // dz = dout/HW where BatchNorm's output is > 0; sums of dz and dz*yhat per channel
  auto gd = (dout.view({B, C}) / static_cast<double>(HW)).contiguous();
  const float* gd_ = gd.data_ptr<float>();
  const int nt = at::get_num_threads();
  std::vector<double> s1(nt * C, 0.0), s2(nt * C, 0.0);
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    const float *__restrict__ p = y_, *__restrict__ sc = sc_, *__restrict__ sh = sh_, *__restrict__ pd = gd_,
                *__restrict__ pm = mean_, *__restrict__ pi = invstd_;
    double* __restrict__ a1 = s1.data() + at::get_thread_num() * C;
    double* __restrict__ a2 = s2.data() + at::get_thread_num() * C;
    std::vector<float> f1(C), f2(C);
    for (int64_t b = lo; b < hi; ++b) {
      std::fill(f1.begin(), f1.end(), 0.f);
      std::fill(f2.begin(), f2.end(), 0.f);
      float* __restrict__ x1 = f1.data();
      float* __restrict__ x2 = f2.data();
      avgpool_grad_sums(p + b * HW * C, HW, pd + b * C, sc, sh, pm, pi, x1, x2, C);
      for (int64_t c = 0; c < C; ++c) { a1[c] += x1[c]; a2[c] += x2[c]; }
    }
  });
  auto dbias = at::empty({C}, y.options()), dweight = at::empty({C}, y.options());
  float *db = dbias.data_ptr<float>(), *dw = dweight.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    double x1 = 0, x2 = 0;
    for (int t = 0; t < nt; ++t) { x1 += s1[t * C + c]; x2 += s2[t * C + c]; }
    db[c] = static_cast<float>(x1);
    dw[c] = static_cast<float>(x2);
  }
  auto a = (weight * invstd).contiguous();
  auto cc = (-a * invstd * dweight / n).contiguous();
  auto bb = (-a * dbias / n - cc * mean).contiguous();
  const float *a_ = a.data_ptr<float>(), *cc_ = cc.data_ptr<float>(), *bb_ = bb.data_ptr<float>();
  auto dy = at::empty_like(y, y.options().memory_format(at::MemoryFormat::ChannelsLast));
  float* dy_ = dy.data_ptr<float>();
  at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    const float *__restrict__ p = y_, *__restrict__ sc = sc_, *__restrict__ sh = sh_, *__restrict__ pd = gd_,
                *__restrict__ pa = a_, *__restrict__ pc = cc_, *__restrict__ pb = bb_;
    float* __restrict__ d = dy_;
    for (int64_t b = lo; b < hi; ++b)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t o = (b * HW + i) * C;
        for (int64_t c = 0; c < C; ++c) {
          const float dz = p[o + c] * sc[c] + sh[c] > 0.f ? pd[b * C + c] : 0.f;
          d[o + c] = pa[c] * dz + p[o + c] * pc[c] + pb[c];
        }
      }
  });
  return {dy, dweight, dbias};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bn_relu_maxpool_forward", &bn_relu_maxpool_forward);
  m.def("bn_relu_maxpool_backward", &bn_relu_maxpool_backward);
  m.def("bn_relu_avgpool_forward", &bn_relu_avgpool_forward);
  m.def("bn_relu_avgpool_backward", &bn_relu_avgpool_backward);
}
