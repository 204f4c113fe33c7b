// The whole LSTM cell as one TensorFlow CPU op, forward and backward, feature-major.
//
// Shapes (N coordinates, K inputs, H hidden, G = 4 H gates in the order i, j, f, o):
//   FusedLstmCell(x [K, N], h [H, N], c [H, N], w [K + H, G], b [G]; forget_bias)
//     -> h' [H, N], c' [H, N]
//   FusedLstmCellGrad(x, h, c, w, b, dh', dc'; forget_bias)
//     -> dx [K, N], dh [H, N], dc [H, N], dw [K + H, G], db [G]
// Every op also takes `matmul`: "float32", or "bfloat16" for matmuls on operands rounded to
// bfloat16 with float32 sums, where the CPU has AVX512_BF16 (see kBf16Built).
// The coordinates are cut into tiles of kTile columns; each tile's stacked [x; h], gates and
// their gradients live in small buffers that stay in the core's cache, so a step reads and writes
// each [., N] tensor once instead of once per elementwise op. The weight gradient is summed per
// run of tiles and the runs' partial sums added in a fixed order at the end, so that it too is
// the same, bit for bit, whatever the threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/denormal.h"
#include "unsupported/Eigen/CXX11/Tensor"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;

// Columns per tile: the largest buffer, the gates [G, kTile], is 20 KB at H = 20.
constexpr int kTile = 64;

// Tile buffers start on 64-byte boundaries and hold whole packets, so that Eigen runs every element
// of a gate's block through its vectorized sigmoid and tanh: on an unaligned start it peels the
// first elements through the scalar functions, which round differently, and the result would
// depend on where malloc put the buffer.
using Buffer = std::vector<float, Eigen::aligned_allocator<float>>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64>;

// A packet of kLanes floats as one value (GCC's vector extension): one register of the widest
// kind the CPU has, 16 floats with AVX-512, 8 with AVX, else 4 (SSE, or NEON on ARM). A packet
// wider than the registers is split through the stack: packets twice too wide made the op about
// ten times slower, with AVX2 and with SSE alike.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float Vec __attribute__((vector_size(4 * kLanes), aligned(4)));
constexpr int kVecs = kTile / kLanes;
// Vector registers: 32 with AVX-512, 16 with AVX or SSE (NEON's 32 taken as 16). The
// register-blocked kernels below size their blocks to them.
#if defined(__AVX512F__)
constexpr int kRegisters = 32;
#else
constexpr int kRegisters = 16;
#endif

// Packets load and store through a pointer of this type, which may alias floats and needs only
// their alignment: a memcpy of a packet, which GCC tuned for AMD Zen 3 copies 16 bytes at a time
// through the stack, stalled every load on the stores before it.
typedef float UnalignedVec __attribute__((vector_size(4 * kLanes), aligned(4), may_alias));

inline Vec LoadVec(const float* p) { return *reinterpret_cast<const UnalignedVec*>(p); }

inline void StoreVec(float* p, Vec v) { *reinterpret_cast<UnalignedVec*>(p) = v; }

// Loads b's row into registers once for all kRows uses: without the empty asm, GCC folds the load
// into each multiply-add, and the loads (20 for 16 multiply-adds), not the arithmetic, bound the
// loop.
inline Vec LoadVecInRegister(const float* p) {
  Vec v = LoadVec(p);
#if defined(__GNUC__) && defined(__AVX512F__)
  asm("" : "+v"(v));
#elif defined(__GNUC__) && defined(__SSE2__)
  asm("" : "+x"(v));
#endif
  return v;
}

// Packets of a tile's columns that TileRows keeps in registers at a time: with 4 rows, 4 x kColVecs
// accumulators and kColVecs packets of b, 20 of AVX-512's 32 registers for the whole tile, 10 of
// the 16 of AVX or SSE for 2 packets of it.
constexpr int kColVecs = kRegisters == 32 ? kVecs : 2;
static_assert(kVecs % kColVecs == 0, "a tile is whole column blocks");

// c[m, 0:L] = start[m] + sum_r a(m, r) b[r, 0:L], L = kTile, start null for zeros (the bias is
// set in the accumulators rather than filled into c and read back): a(m, r) = a[m * a_m +
// r * a_r]; b's rows are kTile floats apart, c's ldc. Rows go kRows at a time: each row of b is
// loaded into registers once per column block and feeds kRows rows of accumulators, enough
// independent sums to keep both multiply-add units busy. Each sum runs over r in order whatever
// the blocks, so the result does not depend on the packet width.
template <int kRows>
inline void TileRows(int depth, const float* a, int a_m, int a_r, const float* b, float* c,
                     int ldc, const float* start) {
  for (int v0 = 0; v0 < kVecs; v0 += kColVecs) {
    Vec acc[kRows][kColVecs];
    for (int q = 0; q < kRows; ++q) {
      const float s = start == nullptr ? 0.0f : start[q];
      for (int v = 0; v < kColVecs; ++v) acc[q][v] = Vec{} + s;
    }
    for (int r = 0; r < depth; ++r) {
      Vec row[kColVecs];
      for (int v = 0; v < kColVecs; ++v) {
        row[v] = LoadVecInRegister(b + r * kTile + kLanes * (v0 + v));
      }
      for (int q = 0; q < kRows; ++q) {
        const float s = a[q * a_m + r * a_r];
        for (int v = 0; v < kColVecs; ++v) acc[q][v] += s * row[v];
      }
    }
    for (int q = 0; q < kRows; ++q) {
      for (int v = 0; v < kColVecs; ++v) StoreVec(c + q * ldc + kLanes * (v0 + v), acc[q][v]);
    }
  }
}

// Calls fn(m, Rows) for m = 0, kBlock, 2 kBlock, ... with Rows a std::integral_constant<int,
// kBlock> while kBlock rows are left, then for each remaining row with 1: the row blocking of the
// tile kernels.
template <int kBlock = 4, typename Fn>
inline void InRowBlocks(int rows, Fn fn) {
  int m = 0;
  for (; m + kBlock <= rows; m += kBlock) fn(m, std::integral_constant<int, kBlock>());
  for (; m < rows; ++m) fn(m, std::integral_constant<int, 1>());
}

inline void TileProduct(int rows, int depth, const float* a, int a_m, int a_r, const float* b,
                        float* c, int ldc, const float* start) {
  InRowBlocks(rows, [&](int m, auto block) {
    TileRows<decltype(block)::value>(depth, a + m * a_m, a_m, a_r, b, c + m * ldc, ldc,
                                     start ? start + m : nullptr);
  });
}

// Adds a span's weight gradient, dw[k, g] += sum_n stacked[k, n] dgates[g, n], to lane-wise
// partial sums p[k G + g] (a packet each, summed across lanes once per op): the sum runs along the
// span's contiguous axis (rows `stride` floats apart, `vecs` packets summed), and keeping lanes
// apart saves a transpose or a horizontal sum a span. kRows rows of stacked by 4 gates at a time:
// with AVX-512, 4 rows, 16 accumulators from 8 loads; with 16 registers (AVX, SSE), 2 rows, 8
// from 6.
// The partial sums, [K + H, G] packets (200 KB at 20-20 with AVX-512), live in the core's second-
// level cache: each span reads and writes them once, so spans of several tiles cut that traffic.
template <int kRows>
inline void WeightGradRows(int g_total, int stride, int vecs, const float* stacked,
                           const float* dgates, Vec* p) {
  for (int g0 = 0; g0 < g_total; g0 += 4) {
    Vec acc[kRows][4] = {};
    for (int v = 0; v < vecs; ++v) {
      Vec s[kRows], e[4];
      for (int q = 0; q < kRows; ++q) s[q] = LoadVecInRegister(stacked + q * stride + kLanes * v);
      for (int u = 0; u < 4; ++u) e[u] = LoadVecInRegister(dgates + (g0 + u) * stride + kLanes * v);
      for (int q = 0; q < kRows; ++q) {
        for (int u = 0; u < 4; ++u) acc[q][u] += s[q] * e[u];
      }
    }
    for (int q = 0; q < kRows; ++q) {
      for (int u = 0; u < 4; ++u) p[q * g_total + g0 + u] += acc[q][u];
    }
  }
}

// Rows of stacked that WeightGradRows takes at a time (see there).
constexpr int kGradRows = kRegisters == 32 ? 4 : 2;

// Tiles whose weight gradient is summed together; see WeightGradRows.
constexpr int kSpanTiles = 4;
constexpr int kSpan = kSpanTiles * kTile;

// A [rows, kTile] tile's rows into dst's rows, `stride` floats apart.
inline void CopyTileRows(const float* src, int rows, float* dst, int stride) {
  for (int r = 0; r < rows; ++r) {
    for (int v = 0; v < kVecs; ++v) {
      StoreVec(dst + r * stride + kLanes * v, LoadVec(src + r * kTile + kLanes * v));
    }
  }
}

// The bias gradient's lane-wise partial sums: p_bias[g] += dgates[g, :].
inline void BiasGradTile(int g_total, const float* dgates, Vec* p_bias) {
  for (int g = 0; g < g_total; ++g) {
    for (int v = 0; v < kVecs; ++v) p_bias[g] += LoadVec(dgates + g * kTile + kLanes * v);
  }
}

inline void WeightGradSpan(int rows, int g_total, int stride, int vecs, const float* stacked,
                           const float* dgates, Vec* p) {
  InRowBlocks<kGradRows>(rows, [&](int k, auto block) {
    WeightGradRows<decltype(block)::value>(g_total, stride, vecs, stacked + k * stride, dgates,
                                           p + k * g_total);
  });
}

// bfloat16 matmuls (the ops' `matmul` attribute): where the CPU has AVX512_BF16, each
// multiply-add instruction (vdpbf16ps) takes two pairs of bfloat16 per float32 lane, twice the
// products of a float32 multiply-add, summed in float32. The operands are rounded to bfloat16
// (8 significant bits) to nearest even; the sums and everything elementwise stay float32, the
// gates' sigmoid and tanh evaluated by pieces (below) to within 3.6e-6 and 7.2e-6.
#if defined(__AVX512BF16__)
constexpr bool kBf16Built = true;
static_assert(kLanes == 16, "the bfloat16 kernels work on AVX-512 packets");

// Two floats rounded to bfloat16 to nearest even, `lo` in the low half of the 32 bits, as the
// instruction rounds them (subnormals to zero).
inline uint32_t PackPair(float lo, float hi) {
  __m512bh packed = _mm512_cvtne2ps_pbh(_mm512_set1_ps(hi), _mm512_set1_ps(lo));
  uint16_t halves[32];
  std::memcpy(halves, &packed, sizeof(halves));
  return static_cast<uint32_t>(halves[0]) | (static_cast<uint32_t>(halves[16]) << 16);
}

// Rows r and r + 1 of a [depth, kTile] float tile interleaved as bfloat16 pairs, one 32-bit lane
// a coordinate: dst [ceil(depth / 2), kTile]; an odd depth's last pair has a zero high half.
inline void PackTileRows(const float* src, int depth, uint32_t* dst) {
  // vcvtne2ps2bf16 puts its second operand's 16 values in the low 16 halves and the first's in
  // the high ones; this permutation interleaves them: (lo 0, hi 0, lo 1, hi 1, ...).
  alignas(64) static const uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i order = _mm512_load_si512(kInterleave);
  for (int p = 0; 2 * p < depth; ++p) {
    const float* lo = src + 2 * p * kTile;
    const float* hi = lo + kTile;
    const bool has_hi = 2 * p + 1 < depth;
    for (int v = 0; v < kTile / 16; ++v) {
      const __m512 l = _mm512_loadu_ps(lo + 16 * v);
      const __m512 h = has_hi ? _mm512_loadu_ps(hi + 16 * v) : _mm512_setzero_ps();
      const __m512i both = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(h, l));
      _mm512_storeu_si512(dst + p * kTile + 16 * v, _mm512_permutexvar_epi16(order, both));
    }
  }
}

// a's rows as bfloat16 pairs along r: dst[m * pairs + p] = (a(m, 2p), a(m, 2p + 1)), a(m, r) =
// a[m * a_m + r * a_r], zero past depth.
inline std::vector<uint32_t> PackWeightPairs(int rows, int depth, const float* a, int a_m,
                                             int a_r) {
  const int pairs = (depth + 1) / 2;
  std::vector<uint32_t> dst(static_cast<size_t>(rows) * pairs);
  for (int m = 0; m < rows; ++m) {
    for (int p = 0; p < pairs; ++p) {
      const float lo = a[m * a_m + 2 * p * a_r];
      const float hi = 2 * p + 1 < depth ? a[m * a_m + (2 * p + 1) * a_r] : 0.0f;
      dst[m * pairs + p] = PackPair(lo, hi);
    }
  }
  return dst;
}

// TileRows on bfloat16 pairs: c[m, :] = start[m] + sum_p a2[m, p] . b2[p, :], each . a pair's two
// products.
template <int kRows>
inline void TileRowsBf16(int pairs, const uint32_t* a, const uint32_t* b, float* c, int ldc,
                         const float* start) {
  __m512 acc[kRows][kVecs];
  for (int q = 0; q < kRows; ++q) {
    const __m512 s = _mm512_set1_ps(start == nullptr ? 0.0f : start[q]);
    for (int v = 0; v < kVecs; ++v) acc[q][v] = s;
  }
  for (int p = 0; p < pairs; ++p) {
    __m512bh row[kVecs];
    for (int v = 0; v < kVecs; ++v) {
      row[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * kTile + 16 * v));
    }
    for (int q = 0; q < kRows; ++q) {
      const __m512bh s = reinterpret_cast<__m512bh>(_mm512_set1_epi32(a[q * pairs + p]));
      for (int v = 0; v < kVecs; ++v) acc[q][v] = _mm512_dpbf16_ps(acc[q][v], s, row[v]);
    }
  }
  for (int q = 0; q < kRows; ++q) {
    for (int v = 0; v < kVecs; ++v) _mm512_storeu_ps(c + q * ldc + 16 * v, acc[q][v]);
  }
}

// TileProduct with a packed by PackWeightPairs and b by PackTileRows.
inline void TileProductBf16(int rows, int pairs, const uint32_t* a, const uint32_t* b, float* c,
                            int ldc, const float* start) {
  InRowBlocks(rows, [&](int m, auto block) {
    TileRowsBf16<decltype(block)::value>(pairs, a + m * pairs, b, c + m * ldc, ldc,
                                         start ? start + m : nullptr);
  });
}

// A [rows, kTile] float tile rounded to bfloat16 row by row: dst's rows (`stride` 32-bit words
// apart) get kTile / 2 words, each two neighbouring coordinates.
inline void RoundTileRows(const float* src, int rows, int stride, uint32_t* dst) {
  for (int r = 0; r < rows; ++r) {
    for (int v = 0; v < kTile / 32; ++v) {
      const __m512 first = _mm512_loadu_ps(src + r * kTile + 32 * v);
      const __m512 second = _mm512_loadu_ps(src + r * kTile + 32 * v + 16);
      _mm512_storeu_si512(dst + r * stride + 16 * v,
                          reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(second, first)));
    }
  }
}

// WeightGradRows on rounded rows (RoundTileRows): the lanes pair neighbouring coordinates of the
// same row, so each instruction adds two coordinates' products into a lane.
template <int kRows>
inline void WeightGradRowsBf16(int g_total, int stride, int vecs, const uint32_t* stacked,
                               const uint32_t* dgates, Vec* p) {
  for (int g0 = 0; g0 < g_total; g0 += 4) {
    __m512 acc[kRows][4];
    for (int q = 0; q < kRows; ++q) {
      for (int u = 0; u < 4; ++u) acc[q][u] = _mm512_setzero_ps();
    }
    for (int v = 0; v < vecs; ++v) {
      __m512bh s[kRows], e[4];
      for (int q = 0; q < kRows; ++q) {
        s[q] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(stacked + q * stride + 16 * v));
      }
      for (int u = 0; u < 4; ++u) {
        e[u] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(dgates + (g0 + u) * stride + 16 * v));
      }
      for (int q = 0; q < kRows; ++q) {
        for (int u = 0; u < 4; ++u) acc[q][u] = _mm512_dpbf16_ps(acc[q][u], s[q], e[u]);
      }
    }
    for (int q = 0; q < kRows; ++q) {
      for (int u = 0; u < 4; ++u) {
        p[q * g_total + g0 + u] += reinterpret_cast<Vec>(acc[q][u]);
      }
    }
  }
}

inline void WeightGradSpanBf16(int rows, int g_total, int stride, int vecs,
                               const uint32_t* stacked, const uint32_t* dgates, Vec* p) {
  InRowBlocks(rows, [&](int k, auto block) {
    WeightGradRowsBf16<decltype(block)::value>(g_total, stride, vecs, stacked + k * stride,
                                               dgates, p + k * g_total);
  });
}

// The gates' sigmoid and tanh in bfloat16 mode. Where the matmuls round their operands to
// bfloat16 the activations need not be float32-exact, and Eigen's (a rational function with a
// division; for the sigmoid an exponential as well) cost most of what the op spends beyond its
// matmuls. Here a cubic per piece of [0, top), 32 pieces, its coefficients looked up by two-table
// permutes: no division. Negative arguments by symmetry; a NaN stays NaN, and +-inf saturate.
// The tables and their largest absolute errors are from scripts/activation_pieces.py.
// kSigmoidPieces: [0, 16) in 32 pieces; largest absolute error 3.6e-06
alignas(64) constexpr float kSigmoidPieces[4][32] = {
    {-0.00244115689f, -0.0013922673f, -0.000148091305f, 0.000629693619f, 0.000861904642f,
     0.000776372151f, 0.000587442832f, 0.000405440544f, 0.000265559705f, 0.000168674596f,
     0.000105191648f, 6.48835339e-05f, 3.97563053e-05f, 2.4262501e-05f, 1.47710261e-05f,
     8.97939299e-06f, 5.45376133e-06f, 3.31062938e-06f, 2.00901263e-06f, 1.21890105e-06f,
     7.39438406e-07f, 4.48542579e-07f, 2.72073351e-07f, 1.65027728e-07f, 1.00096777e-07f,
     6.07127433e-08f, 3.68244599e-08f, 2.23353602e-08f, 1.35471581e-08f, 8.21670199e-09f,
     4.98366282e-09f, 3.02276049e-09f},
    {-0.000125086022f, -0.00759655237f, -0.0117161451f, -0.0120148621f, -0.0100173978f,
     -0.00738530606f, -0.00504891947f, -0.00329481158f, -0.00208959589f, -0.0013022956f,
     -0.000803029572f, -0.000491969753f, -0.000300216285f, -0.00018276411f, -0.0001111007f,
     -6.74776384e-05f, -4.09610184e-05f, -2.48565411e-05f, -1.50808291e-05f, -9.14866814e-06f,
     -5.5495675e-06f, -3.36621065e-06f, -2.04179355e-06f, -1.23844131e-06f, -7.51163839e-07f,
     -4.55608159e-07f, -2.76341837e-07f, -1.67610452e-07f, -1.01661122e-07f, -6.1660522e-08f,
     -3.7398987e-08f, -2.26836629e-08f},
    {0.12502344f, 0.117588036f, 0.0983802155f, 0.074607864f, 0.0525002852f, 0.035041254f,
     0.0225751176f, 0.0142153846f, 0.00882329699f, 0.00542770745f, 0.00332054752f,
     0.00202459842f, 0.00123189937f, 0.000748631719f, 0.000454601657f, 0.000275926403f,
     0.000167430189f, 0.000101578182f, 6.1620085e-05f, 3.73780786e-05f, 2.26722768e-05f,
     1.37519191e-05f, 8.34114053e-06f, 5.05922344e-06f, 3.06859829e-06f, 1.86120792e-06f,
     1.12888301e-06f, 6.84703366e-07f, 4.15294039e-07f, 2.51888679e-07f, 1.52778242e-07f,
     9.26647346e-08f},
    {0.5f, 0.622455716f, 0.731055558f, 0.817573071f, 0.880796969f, 0.924142241f, 0.95257467f,
     0.970688224f, 0.98201412f, 0.989013255f, 0.993307292f, 0.995929956f, 0.997527421f,
     0.998498857f, 0.999088943f, 0.999447227f, 0.999664664f, 0.999796569f, 0.999876618f,
     0.999925137f, 0.999954581f, 0.999972463f, 0.999983311f, 0.999989867f, 0.999993861f,
     0.999996245f, 0.999997735f, 0.999998629f, 0.999999166f, 0.999999523f, 0.999999702f,
     0.999999821f},
};
// kTanhPieces: [0, 8) in 32 pieces; largest absolute error 7.2e-06
alignas(64) constexpr float kTanhPieces[4][32] = {
    {-0.00488231378f, -0.00278453459f, -0.00029618261f, 0.00125938724f, 0.00172380928f,
     0.0015527443f, 0.00117488566f, 0.000810881087f, 0.000531119411f, 0.000337349193f,
     0.000210383296f, 0.000129767068f, 7.95126107e-05f, 4.85250021e-05f, 2.95420523e-05f,
     1.7958786e-05f, 1.09075227e-05f, 6.62125876e-06f, 4.01802527e-06f, 2.4378021e-06f,
     1.47887647e-06f, 8.97084988e-07f, 5.44146872e-07f, 3.30055315e-07f, 2.00193739e-07f,
     1.21425458e-07f, 7.36488559e-08f, 4.46706778e-08f, 2.70942451e-08f, 1.64334679e-08f,
     9.96739669e-09f, 6.04559736e-09f},
    {-0.000250172045f, -0.0151931047f, -0.0234322902f, -0.0240297243f, -0.0200347956f,
     -0.0147706121f, -0.0100978389f, -0.00658962317f, -0.00417919178f, -0.00260459119f,
     -0.00160605914f, -0.000983939506f, -0.00060043257f, -0.00036552822f, -0.000222201401f,
     -0.000134955277f, -8.19220368e-05f, -4.97130823e-05f, -3.01616583e-05f, -1.82973363e-05f,
     -1.10991341e-05f, -6.73242084e-06f, -4.08358756e-06f, -2.47688263e-06f, -1.5023279e-06f,
     -9.11216262e-07f, -5.52683559e-07f, -3.35220847e-07f, -2.03322159e-07f, -1.23321172e-07f,
     -7.47981304e-08f, -4.53674645e-08f},
    {0.250046879f, 0.235176072f, 0.196760431f, 0.149215728f, 0.10500057f, 0.070082508f,
     0.0451502353f, 0.0284307692f, 0.017646594f, 0.0108554149f, 0.00664109504f, 0.00404919684f,
     0.00246379874f, 0.00149726344f, 0.000909203314f, 0.000551852805f, 0.000334860379f,
     0.000203156364f, 0.00012324017f, 7.47561571e-05f, 4.53445537e-05f, 2.75038383e-05f,
     1.66822811e-05f, 1.01184469e-05f, 6.13719658e-06f, 3.72241584e-06f, 2.25776603e-06f,
     1.36940673e-06f, 8.30588078e-07f, 5.03777414e-07f, 3.05556568e-07f, 1.85329512e-07f},
    {0.0f, 0.244911462f, 0.462111115f, 0.635146201f, 0.761593938f, 0.848284543f, 0.905149341f,
     0.941376448f, 0.964028239f, 0.978026569f, 0.986614585f, 0.991859913f, 0.995054841f,
     0.996997714f, 0.998177946f, 0.998894453f, 0.999329329f, 0.999593139f, 0.999753237f,
     0.999850333f, 0.999909222f, 0.999944925f, 0.999966621f, 0.999979734f, 0.999987721f,
     0.999992549f, 0.99999547f, 0.999997258f, 0.999998331f, 0.999998987f, 0.999999404f,
     0.999999642f},
};

struct Pieces {
  __m512 lo[4], hi[4];  // coefficient k of pieces 0-15 and 16-31
  float per_unit;       // pieces per unit of the argument
  float below_top;      // the largest float below top
};

inline Pieces LoadPieces(const float (&c)[4][32], float top) {
  Pieces p;
  for (int k = 0; k < 4; ++k) {
    p.lo[k] = _mm512_load_ps(c[k]);
    p.hi[k] = _mm512_load_ps(c[k] + 16);
  }
  p.per_unit = 32.0f / top;
  p.below_top = std::nextafter(top, 0.0f);
  return p;
}

// The cubic of a's piece at a >= 0, clamped below top.
inline __m512 EvalPieces(const Pieces& p, __m512 a) {
  // The clamp's NaN operand second: vminps returns its second operand when either is NaN.
  a = _mm512_min_ps(_mm512_set1_ps(p.below_top), a);
  const __m512 s = _mm512_mul_ps(a, _mm512_set1_ps(p.per_unit));
  const __m512i piece = _mm512_cvttps_epi32(s);
  const __m512 t = _mm512_sub_ps(s, _mm512_roundscale_ps(s, _MM_FROUND_TO_NEG_INF));
  __m512 y = _mm512_permutex2var_ps(p.lo[0], piece, p.hi[0]);
  for (int k = 1; k < 4; ++k) {
    y = _mm512_fmadd_ps(y, t, _mm512_permutex2var_ps(p.lo[k], piece, p.hi[k]));
  }
  return y;
}

// y[0:n] = sigmoid(x), y may be x; n a multiple of 16, both 64-byte aligned.
inline void SigmoidPiecewise(const float* x, float* y, int n) {
  const Pieces p = LoadPieces(kSigmoidPieces, 16.0f);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int e = 0; e < n; e += 16) {
    const __m512 v = _mm512_load_ps(x + e);
    const __m512 a = EvalPieces(p, _mm512_abs_ps(v));
    const __mmask16 negative = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
    _mm512_store_ps(y + e, _mm512_mask_sub_ps(a, negative, one, a));
  }
}

// y[0:n] = tanh(x), as SigmoidPiecewise.
inline void TanhPiecewise(const float* x, float* y, int n) {
  const Pieces p = LoadPieces(kTanhPieces, 8.0f);
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  for (int e = 0; e < n; e += 16) {
    const __m512 v = _mm512_load_ps(x + e);
    const __m512 a = EvalPieces(p, _mm512_abs_ps(v));
    const __m512i with_sign = _mm512_or_si512(_mm512_castps_si512(a),
                                              _mm512_and_si512(_mm512_castps_si512(v), sign));
    _mm512_store_ps(y + e, _mm512_castsi512_ps(with_sign));
  }
}
#else
// Without AVX512_BF16 the ops refuse matmul='bfloat16' (ReadMatmul), so these never run; they
// keep the callers free of preprocessor branches.
constexpr bool kBf16Built = false;
inline std::vector<uint32_t> PackWeightPairs(int, int, const float*, int, int) { return {}; }
inline void PackTileRows(const float*, int, uint32_t*) {}
inline void TileProductBf16(int, int, const uint32_t*, const uint32_t*, float*, int,
                            const float*) {}
inline void RoundTileRows(const float*, int, int, uint32_t*) {}
inline void WeightGradSpanBf16(int, int, int, int, const uint32_t*, const uint32_t*, Vec*) {}
inline void SigmoidPiecewise(const float*, float*, int) {}
inline void TanhPiecewise(const float*, float*, int) {}
#endif

using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf, Eigen::Aligned64>;

// y[0:n] = sigmoid(x) and tanh(x) over tile buffers (y may be x): Eigen's in float32 mode, the
// pieces in bfloat16 mode (`pieces`).
inline void Sigmoid(bool pieces, const float* x, float* y, int n) {
  if (pieces) {
    SigmoidPiecewise(x, y, n);
  } else {
    ArrayMap(y, n) = ConstArrayMap(x, n).logistic();
  }
}

inline void Tanh(bool pieces, const float* x, float* y, int n) {
  if (pieces) {
    TanhPiecewise(x, y, n);
  } else {
    ArrayMap(y, n) = ConstArrayMap(x, n).tanh();
  }
}

// h = o tanh(c) over a tile's n floats, in `hidden` (apart from `o` and `cell`).
inline void HiddenOutput(bool pieces, const float* o, const float* cell, float* hidden, int n) {
  Tanh(pieces, cell, hidden, n);
  ArrayMap(hidden, n) *= ConstArrayMap(o, n);
}

inline float LaneSum(Vec v) {
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += v[l];
  return sum;
}

// Copies rows [rows, width] of a [rows, n] tensor starting at column col0 into a [rows, kTile]
// buffer, zero-filling the columns past the tensor's end. A full tile's rows go as kVecs packets
// each, inline: a call of memcpy a 256-byte row cost about a fifth of the backward op.
inline void LoadTile(const float* src, int rows, int64_t n, int64_t col0, int width, float* dst) {
  if (width == kTile) {
    for (int r = 0; r < rows; ++r) {
      for (int v = 0; v < kVecs; ++v) {
        StoreVec(dst + r * kTile + kLanes * v, LoadVec(src + r * n + col0 + kLanes * v));
      }
    }
    return;
  }
  for (int r = 0; r < rows; ++r) {
    std::memcpy(dst + r * kTile, src + r * n + col0, width * sizeof(float));
    std::fill(dst + r * kTile + width, dst + (r + 1) * kTile, 0.0f);
  }
}

inline void StoreTile(const float* src, int rows, int64_t n, int64_t col0, int width, float* dst) {
  if (width == kTile) {
    for (int r = 0; r < rows; ++r) {
      for (int v = 0; v < kVecs; ++v) {
        StoreVec(dst + r * n + col0 + kLanes * v, LoadVec(src + r * kTile + kLanes * v));
      }
    }
    return;
  }
  for (int r = 0; r < rows; ++r) {
    std::memcpy(dst + r * n + col0, src + r * kTile, width * sizeof(float));
  }
}

struct Dims {
  int k, h, g;
  int64_t n;
};

// Checks the shapes common to both ops and sets dims; on a mismatch, ctx's status says which.
void CheckShapes(OpKernelContext* ctx, const Tensor& x, const Tensor& h, const Tensor& c,
                 const Tensor& w, Dims* dims) {
  OP_REQUIRES(ctx, x.dims() == 2 && h.dims() == 2 && c.dims() == 2 && w.dims() == 2,
              InvalidArgument("FusedLstmCell: x, h, c and w must be matrices; got ranks ",
                              x.dims(), ", ", h.dims(), ", ", c.dims(), ", ", w.dims()));
  dims->k = x.dim_size(0);
  dims->h = h.dim_size(0);
  dims->g = 4 * dims->h;
  dims->n = x.dim_size(1);
  OP_REQUIRES(ctx, h.dim_size(1) == dims->n && c.dim_size(0) == dims->h &&
                       c.dim_size(1) == dims->n,
              InvalidArgument("FusedLstmCell: h and c must be [hidden, ", dims->n, "] like x's "
                              "columns; got ", h.shape().DebugString(), " and ",
                              c.shape().DebugString()));
  OP_REQUIRES(ctx, w.dim_size(0) == dims->k + dims->h && w.dim_size(1) == dims->g,
              InvalidArgument("FusedLstmCell: w must be [", dims->k + dims->h, ", ", dims->g,
                              "]; got ", w.shape().DebugString()));
}

constexpr int kTilesPerTask = 4;  // 256 coordinates a task: about 62 tasks for MNIST's 15,910

// Runs fn(first tile, end tile, worker) over runs of kTilesPerTask tiles on the CPU worker
// threads. Many short runs rather than one per thread: on cores shared with other processes, a
// thread that loses its core leaves its runs to the others instead of holding up the op. The third
// argument is the run's index: a buffer per run needs no lock, and whichever thread runs it, a
// run's tiles go in order.
template <typename Fn>
void ForEachTileRun(OpKernelContext* ctx, int64_t num_tiles, Fn fn,
                    int64_t tiles_per_task = kTilesPerTask) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  pool->ParallelForWithWorkerId(
      (num_tiles + tiles_per_task - 1) / tiles_per_task,
      tsl::thread::ThreadPool::SchedulingParams::Fixed(1),
      [&](int64_t begin, int64_t end, int) {
        // TensorFlow's own kernels flush subnormals to zero; so does this one, on whichever
        // thread runs it, so that results do not depend on it.
        tensorflow::port::ScopedFlushDenormal flush;
        for (int64_t run = begin; run < end; ++run) {
          fn(run * tiles_per_task, std::min<int64_t>(num_tiles, (run + 1) * tiles_per_task),
             run);
        }
      });
}

// The weight gradient is summed over at most this many runs of tiles, each run's partial sums
// kept apart and added in run order at the end: the same bits whichever thread ran which run.
constexpr int64_t kWeightGradRuns = 16;

// kForwardNote: an output of an input's shape may take that input's buffer when TensorFlow says
// nothing else holds it (forward_input_or_allocate_output): safe here because a tile reads all
// of its columns of every input before it writes any output's, and no tile touches another's
// columns. Writing into lines just read spares reading a fresh buffer's lines from memory first.


// The bias with the forget bias added to the forget gate's rows.
std::vector<float> ShiftedBias(const Tensor& b, int hidden, float forget_bias) {
  std::vector<float> bias(b.flat<float>().data(), b.flat<float>().data() + 4 * hidden);
  for (int r = 2 * hidden; r < 3 * hidden; ++r) bias[r] += forget_bias;
  return bias;
}

// One tile's forward pass: from stacked [x; h] [K + H, kTile] and cell c [H, kTile] to the gates'
// activations in `gates` [G, kTile] (sigmoid i, tanh j, sigmoid f, sigmoid o) and c' in `cell`.
// With bfloat16 matmuls, w_pairs is w packed by PackWeightPairs(G, K + H, w, 1, G) and
// stacked_pairs a [ceil((K + H) / 2), kTile] scratch tile; both are null in float32.
inline void ForwardTile(const Dims& d, const float* w, const uint32_t* w_pairs,
                        const float* bias, const float* stacked, uint32_t* stacked_pairs,
                        float* gates, float* cell) {
  const int H = d.h * kTile;  // floats in one gate's block of the tile
  // gates[g, :] = bias[g] + sum_k w[k, g] stacked[k, :]
  if (w_pairs == nullptr) {
    TileProduct(d.g, d.k + d.h, w, 1, d.g, stacked, gates, kTile, bias);
  } else {
    PackTileRows(stacked, d.k + d.h, stacked_pairs);
    TileProductBf16(d.g, (d.k + d.h + 1) / 2, w_pairs, stacked_pairs, gates, kTile, bias);
  }
  const bool pieces = w_pairs != nullptr;  // bfloat16 mode
  Sigmoid(pieces, gates, gates, H);  // i
  Tanh(pieces, gates + H, gates + H, H);  // j
  Sigmoid(pieces, gates + 2 * H, gates + 2 * H, 2 * H);  // f and o
  ArrayMap i(gates, H), j(gates + H, H), f(gates + 2 * H, H);
  ArrayMap cm(cell, H);
  cm = f * cm + i * j;
}

// The ops' `matmul` attribute: "bfloat16" rounds the matmuls' operands to bfloat16 (see
// kBf16Built), refused where the library was built without AVX512_BF16.
void ReadMatmul(OpKernelConstruction* ctx, const char* op, bool* bf16) {
  std::string matmul;
  OP_REQUIRES_OK(ctx, ctx->GetAttr("matmul", &matmul));
  *bf16 = matmul == "bfloat16";
  OP_REQUIRES(ctx, !*bf16 || kBf16Built,
              InvalidArgument(op, ": matmul='bfloat16' needs a CPU with AVX512_BF16 and the op "
                              "built for it; this build has none: use 'float32'"));
}

// w's bfloat16 pairs for the gates' matmul (forward) or for [dx; dh] (backward); empty where the
// op runs float32.
std::vector<uint32_t> GatePairs(bool bf16, const Dims& d, const float* w) {
  return bf16 ? PackWeightPairs(d.g, d.k + d.h, w, 1, d.g) : std::vector<uint32_t>();
}

std::vector<uint32_t> InputPairs(bool bf16, const Dims& d, const float* w) {
  return bf16 ? PackWeightPairs(d.k + d.h, d.g, w, d.g, 1) : std::vector<uint32_t>();
}

inline const uint32_t* OrNull(const std::vector<uint32_t>& v) {
  return v.empty() ? nullptr : v.data();
}

class FusedLstmCellOp : public OpKernel {
 public:
  explicit FusedLstmCellOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("forget_bias", &forget_bias_));
    ReadMatmul(ctx, "FusedLstmCell", &bf16_);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& h = ctx->input(1);
    const Tensor& c = ctx->input(2);
    const Tensor& w = ctx->input(3);
    const Tensor& b = ctx->input(4);
    Dims d;
    CheckShapes(ctx, x, h, c, w, &d);
    if (!ctx->status().ok()) return;
    OP_REQUIRES(ctx, b.dims() == 1 && b.dim_size(0) == d.g,
                InvalidArgument("FusedLstmCell: b must be [", d.g, "]; got ",
                                b.shape().DebugString()));
    Tensor *h_out, *c_out;
    // h' and c' take h's and c's buffers where nothing else holds them (a loop's carried state
    // outside a gradient tape): see kForwardNote.
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 0, TensorShape({d.h, d.n}),
                                                              &h_out));
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({2}, 1, TensorShape({d.h, d.n}),
                                                              &c_out));
    if (d.n == 0) return;
    const float* xp = x.flat<float>().data();
    const float* hp = h.flat<float>().data();
    const float* cp = c.flat<float>().data();
    const float* wp = w.flat<float>().data();
    const std::vector<float> bias = ShiftedBias(b, d.h, forget_bias_);
    float* hn = h_out->flat<float>().data();
    float* cn = c_out->flat<float>().data();
    const std::vector<uint32_t> w_pairs = GatePairs(bf16_, d, wp);
    const int64_t num_tiles = (d.n + kTile - 1) / kTile;
    ForEachTileRun(ctx, num_tiles, [&](int64_t t0, int64_t t1, int64_t) {
      Buffer stacked((d.k + d.h) * kTile), gates(d.g * kTile), cell(d.h * kTile),
          hidden(d.h * kTile);
      std::vector<uint32_t> stacked_pairs((d.k + d.h + 1) / 2 * kTile);
      const int H = d.h * kTile;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t col0 = t * kTile;
        const int width = static_cast<int>(std::min<int64_t>(kTile, d.n - col0));
        LoadTile(xp, d.k, d.n, col0, width, stacked.data());
        LoadTile(hp, d.h, d.n, col0, width, stacked.data() + d.k * kTile);
        LoadTile(cp, d.h, d.n, col0, width, cell.data());
        ForwardTile(d, wp, OrNull(w_pairs), bias.data(), stacked.data(), stacked_pairs.data(),
                    gates.data(), cell.data());
        HiddenOutput(bf16_, gates.data() + 3 * H, cell.data(), hidden.data(), H);
        StoreTile(hidden.data(), d.h, d.n, col0, width, hn);
        StoreTile(cell.data(), d.h, d.n, col0, width, cn);
      }
    });
  }

 private:
  float forget_bias_;
  bool bf16_;
};

// The gradients of (h', c') with respect to x, h, c, w and b. The gates are recomputed from the
// inputs rather than kept by the forward op: writing them there and reading them back here moves
// about as many bytes as the forward pass itself, and their matmul costs less on these shapes.
class FusedLstmCellGradOp : public OpKernel {
 public:
  explicit FusedLstmCellGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("forget_bias", &forget_bias_));
    ReadMatmul(ctx, "FusedLstmCellGrad", &bf16_);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& h = ctx->input(1);
    const Tensor& c = ctx->input(2);
    const Tensor& w = ctx->input(3);
    const Tensor& b = ctx->input(4);
    const Tensor& dh_next = ctx->input(5);
    const Tensor& dc_next = ctx->input(6);
    Dims d;
    CheckShapes(ctx, x, h, c, w, &d);
    if (!ctx->status().ok()) return;
    OP_REQUIRES(ctx, b.dims() == 1 && b.dim_size(0) == d.g && dh_next.shape() == c.shape() &&
                         dc_next.shape() == c.shape(),
                InvalidArgument("FusedLstmCellGrad: b must be [", d.g, "] and dh', dc' ",
                                c.shape().DebugString(), "; got ", b.shape().DebugString(), ", ",
                                dh_next.shape().DebugString(), ", ",
                                dc_next.shape().DebugString()));
    const int kh = d.k + d.h;
    Tensor *dx_out, *dh_out, *dc_out, *dw_out, *db_out;
    // dx, dh and dc take the buffers of x, dh' and dc' where nothing else holds them (see
    // kForwardNote): a tile loads all five inputs before it stores an output.
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, TensorShape({d.k, d.n}),
                                                              &dx_out));
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({5, 1}, 1,
                                                              TensorShape({d.h, d.n}), &dh_out));
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({6, 2}, 2,
                                                              TensorShape({d.h, d.n}), &dc_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({kh, d.g}), &dw_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({d.g}), &db_out));
    float* dw = dw_out->flat<float>().data();
    float* db = db_out->flat<float>().data();
    std::fill_n(dw, kh * d.g, 0.0f);
    std::fill_n(db, d.g, 0.0f);
    if (d.n == 0) return;
    const float* xp = x.flat<float>().data();
    const float* hp = h.flat<float>().data();
    const float* cp = c.flat<float>().data();
    const float* wp = w.flat<float>().data();
    const float* dhp = dh_next.flat<float>().data();
    const float* dcp = dc_next.flat<float>().data();
    float* dxp = dx_out->flat<float>().data();
    float* dhn = dh_out->flat<float>().data();
    float* dcn = dc_out->flat<float>().data();
    const std::vector<float> bias = ShiftedBias(b, d.h, forget_bias_);
    const std::vector<uint32_t> w_pairs = GatePairs(bf16_, d, wp);
    const std::vector<uint32_t> wt_pairs = InputPairs(bf16_, d, wp);
    const int64_t num_tiles = (d.n + kTile - 1) / kTile;
    // Per run of tiles: lane-wise partial sums of dw, then of db, added in run order below.
    const int64_t per_run = static_cast<int64_t>(kh + 1) * d.g;
    const int64_t num_runs = std::min<int64_t>(kWeightGradRuns, num_tiles);
    const int64_t tiles_per_run = (num_tiles + num_runs - 1) / num_runs;
    std::vector<std::vector<Vec>> partial((num_tiles + tiles_per_run - 1) / tiles_per_run);
    ForEachTileRun(ctx, num_tiles, [&](int64_t t0, int64_t t1, int64_t run) {
      partial[run].assign(per_run, Vec{});
      Vec* dw_part = partial[run].data();
      Vec* db_part = dw_part + kh * d.g;
      Buffer stacked(kh * kTile), gates(d.g * kTile), dgates(d.g * kTile),
          cell(d.h * kTile), cell_prev(d.h * kTile), dh(d.h * kTile), dc(d.h * kTile),
          dstacked(kh * kTile);
      // The weight gradient's operands of kSpanTiles tiles side by side, [rows, kSpan] (in
      // float32, or rounded to bfloat16 two coordinates a word, [rows, kSpan / 2]).
      Buffer stacked_span(bf16_ ? 0 : kh * kSpan), dgates_span(bf16_ ? 0 : d.g * kSpan);
      std::vector<uint32_t> stacked_pairs(bf16_ ? (kh + 1) / 2 * kTile : 0),
          dgates_pairs(bf16_ ? d.g / 2 * kTile : 0), stacked_rounded(bf16_ ? kh * kSpan / 2 : 0),
          dgates_rounded(bf16_ ? d.g * kSpan / 2 : 0);
      int spanned = 0;  // tiles in the span so far
      auto add_span = [&]() {
        if (spanned == 0) return;
        if (!bf16_) {
          WeightGradSpan(kh, d.g, kSpan, spanned * kVecs, stacked_span.data(),
                         dgates_span.data(), dw_part);
        } else {
          WeightGradSpanBf16(kh, d.g, kSpan / 2, spanned * kVecs / 2, stacked_rounded.data(),
                             dgates_rounded.data(), dw_part);
        }
        spanned = 0;
      };
      const int H = d.h * kTile;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t col0 = t * kTile;
        const int width = static_cast<int>(std::min<int64_t>(kTile, d.n - col0));
        LoadTile(xp, d.k, d.n, col0, width, stacked.data());
        LoadTile(hp, d.h, d.n, col0, width, stacked.data() + d.k * kTile);
        LoadTile(cp, d.h, d.n, col0, width, cell_prev.data());
        std::copy(cell_prev.begin(), cell_prev.end(), cell.begin());
        ForwardTile(d, wp, OrNull(w_pairs), bias.data(), stacked.data(), stacked_pairs.data(),
                    gates.data(), cell.data());
        LoadTile(dhp, d.h, d.n, col0, width, dh.data());
        LoadTile(dcp, d.h, d.n, col0, width, dc.data());
        ArrayMap i(gates.data(), H), j(gates.data() + H, H), f(gates.data() + 2 * H, H),
            o(gates.data() + 3 * H, H);
        ArrayMap di(dgates.data(), H), dj(dgates.data() + H, H), df(dgates.data() + 2 * H, H),
            dout(dgates.data() + 3 * H, H);
        ArrayMap cm(cell_prev.data(), H), cnm(cell.data(), H), dhm(dh.data(), H),
            dcm(dc.data(), H);
        // With tc = tanh(c'): do = dh' tc o (1 - o); dc_total = dc' + dh' o (1 - tc^2), in dc.
        Tanh(bf16_, cell.data(), cell.data(), H);
        dout = dhm * cnm * o * (1.0f - o);
        dcm = dcm + dhm * o * (1.0f - cnm.square());
        di = dcm * j * i * (1.0f - i);
        dj = dcm * i * (1.0f - j.square());
        df = dcm * cm * f * (1.0f - f);
        dcm = dcm * f;
        StoreTile(dc.data(), d.h, d.n, col0, width, dcn);
        // dstacked[k, :] = sum_g w[k, g] dgates[g, :]
        if (!bf16_) {
          TileProduct(kh, d.g, wp, d.g, 1, dgates.data(), dstacked.data(), kTile, nullptr);
        } else {
          PackTileRows(dgates.data(), d.g, dgates_pairs.data());
          TileProductBf16(kh, d.g / 2, wt_pairs.data(), dgates_pairs.data(), dstacked.data(),
                          kTile, nullptr);
        }
        StoreTile(dstacked.data(), d.k, d.n, col0, width, dxp);
        StoreTile(dstacked.data() + d.k * kTile, d.h, d.n, col0, width, dhn);
        // The padding's columns of the tile add nothing: their dh', dc' were zero-filled.
        BiasGradTile(d.g, dgates.data(), db_part);
        if (!bf16_) {
          CopyTileRows(stacked.data(), kh, stacked_span.data() + spanned * kTile, kSpan);
          CopyTileRows(dgates.data(), d.g, dgates_span.data() + spanned * kTile, kSpan);
        } else {
          RoundTileRows(stacked.data(), kh, kSpan / 2,
                        stacked_rounded.data() + spanned * kTile / 2);
          RoundTileRows(dgates.data(), d.g, kSpan / 2,
                        dgates_rounded.data() + spanned * kTile / 2);
        }
        if (++spanned == kSpanTiles) add_span();
      }
      add_span();
    }, tiles_per_run);
    for (const std::vector<Vec>& part : partial) {
      if (part.empty()) continue;
      for (int e = 0; e < kh * d.g; ++e) dw[e] += LaneSum(part[e]);
      for (int g = 0; g < d.g; ++g) db[g] += LaneSum(part[kh * d.g + g]);
    }
  }

 private:
  float forget_bias_;
  bool bf16_;
};


// The Keras optimizer's whole learned update in one pass over the coordinates: the gradient's
// preprocessing, every LSTM layer and the output layer, per tile, so that nothing between them
// (features, a layer's output, the transposes and concatenations of the op-by-op path) goes to
// memory. Forward only: the Keras step needs no derivative of the rule.
//
//   FusedLearnedStep(gradient [N], m [N'], v [N'], count [], hidden L x [H_l, N],
//                    cell L x [H_l, N], w_gates L x [K_l + H_l, 4 H_l], b_gates L x [4 H_l],
//                    w_out [H_L, 1], b_out [1]; preprocess, k, beta1, beta2,
//                    beta1_complement, beta2_complement (1 - beta1, 1 - beta2), epsilon,
//                    forget_bias, scale)
//     -> update [N], m' [N'], v' [N'], hidden' L x [H_l, N], cell' L x [H_l, N]
// preprocess: "identity" (K_0 = 1), "log_and_sign" (K_0 = 2; preprocess.log_and_sign with k),
// "adam_normalized" (K_0 = 2; preprocess.adam_normalized, count being the step t after this
// gradient; m and v have N elements, otherwise they pass through untouched).
//
//   FusedLearnedStepInPlace(gradient [N], count [], moments M x resource, hidden L x resource,
//                           cell L x resource, w_gates, b_gates, w_out, b_out; the same attrs)
//     -> update [N]
// The same step with m, v (M = 2 for "adam_normalized", else 0) and the LSTM states held in
// resource variables and overwritten where they are: a tile's columns are read before they are
// written, so the new state goes into cache lines the old one just brought in, where writing a
// fresh tensor first reads its lines from memory. A variable whose buffer another tensor still
// holds gets a fresh one instead. A gradient that is not all finite moves nothing: the update
// comes back NaN, for the caller's check to refuse.
class LearnedStepBase : public OpKernel {
 public:
  explicit LearnedStepBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("preprocess", &preprocess_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("k", &k_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("beta1", &beta1_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("beta2", &beta2_));
    // 1 - beta as the caller computed it (in double, then rounded): 1 - 0.999f in float32 is
    // 1.3e-5 off 0.001, which v, a sum of such terms, would carry.
    OP_REQUIRES_OK(ctx, ctx->GetAttr("beta1_complement", &beta1_complement_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("beta2_complement", &beta2_complement_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("forget_bias", &forget_bias_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    ReadMatmul(ctx, type_string().c_str(), &bf16_);
    OP_REQUIRES(ctx, preprocess_ == "identity" || preprocess_ == "log_and_sign" ||
                         preprocess_ == "adam_normalized",
                InvalidArgument(type_string(), ": preprocess must be identity, log_and_sign or "
                                "adam_normalized; got ", preprocess_));
  }

 protected:
  // Where one step reads and writes; an output may be its input's own buffer.
  struct Step {
    int64_t n = 0;
    float count = 0.0f;
    const float* g = nullptr;
    const float *m = nullptr, *v = nullptr;  // adam_normalized only
    float *m_out = nullptr, *v_out = nullptr;
    float* update = nullptr;
    std::vector<const float*> h, c;
    std::vector<float*> h_out, c_out;
  };

  // The network's weights as the tiles use them, read per call.
  struct Network {
    std::vector<Dims> dims;
    std::vector<const float*> w;
    std::vector<std::vector<float>> bias;
    std::vector<std::vector<uint32_t>> w_pairs;
    int widest = 2;
    const float* w_last = nullptr;
    float b_last = 0.0f;
  };

  bool adam() const { return preprocess_ == "adam_normalized"; }

  // Checks that count is a scalar and, for adam_normalized, that m and v have n elements.
  void CheckCountAndMoments(OpKernelContext* ctx, int64_t n, const Tensor& count,
                            const Tensor& m, const Tensor& v) const {
    OP_REQUIRES(ctx, count.NumElements() == 1,
                InvalidArgument(type_string(), ": count must be a scalar; got ",
                                count.shape().DebugString()));
    OP_REQUIRES(ctx, !adam() || (m.NumElements() == n && v.NumElements() == n),
                InvalidArgument(type_string(), ": m and v must have the gradient's ", n,
                                " elements; got ", m.shape().DebugString(), " and ",
                                v.shape().DebugString()));
  }

  // Checks the layers' state shapes (hidden[l], cell[l]) and weights against the gradient's N,
  // reads the weights into net; on a mismatch ctx's status says which.
  void ReadNetwork(OpKernelContext* ctx, int64_t n, const std::vector<const Tensor*>& hidden,
                   const std::vector<const Tensor*>& cell, Network* net) const {
    tensorflow::OpInputList w_gates, b_gates;
    OP_REQUIRES_OK(ctx, ctx->input_list("w_gates", &w_gates));
    OP_REQUIRES_OK(ctx, ctx->input_list("b_gates", &b_gates));
    const int num_layers = hidden.size();
    std::vector<Dims>& dims = net->dims;
    dims.assign(num_layers, Dims());
    int inputs = preprocess_ == "identity" ? 1 : 2;
    for (int l = 0; l < num_layers; ++l) {
      Dims& d = dims[l];
      d.k = inputs;
      d.h = hidden[l]->dims() == 2 ? hidden[l]->dim_size(0) : -1;
      d.g = 4 * d.h;
      d.n = n;
      OP_REQUIRES(ctx, hidden[l]->dims() == 2 && hidden[l]->dim_size(1) == n &&
                           cell[l]->shape() == hidden[l]->shape(),
                  InvalidArgument(type_string(), ": layer ", l, "'s hidden and cell must be "
                                  "[hidden, ", n, "]; got ", hidden[l]->shape().DebugString(),
                                  " and ", cell[l]->shape().DebugString()));
      OP_REQUIRES(ctx, w_gates[l].dims() == 2 && w_gates[l].dim_size(0) == d.k + d.h &&
                           w_gates[l].dim_size(1) == d.g && b_gates[l].NumElements() == d.g,
                  InvalidArgument(type_string(), ": layer ", l, "'s w_gates must be [",
                                  d.k + d.h, ", ", d.g, "] and b_gates [", d.g, "]; got ",
                                  w_gates[l].shape().DebugString(), " and ",
                                  b_gates[l].shape().DebugString()));
      inputs = d.h;
    }
    const Tensor& w_out = ctx->input(ctx->num_inputs() - 2);
    const Tensor& b_out = ctx->input(ctx->num_inputs() - 1);
    OP_REQUIRES(ctx, w_out.NumElements() == inputs && b_out.NumElements() == 1,
                InvalidArgument(type_string(), ": w_out must be [", inputs, ", 1] and b_out "
                                "[1]; got ", w_out.shape().DebugString(), " and ",
                                b_out.shape().DebugString()));
    net->w.assign(num_layers, nullptr);
    net->bias.assign(num_layers, {});
    net->w_pairs.assign(num_layers, {});
    net->widest = 2;
    for (int l = 0; l < num_layers; ++l) {
      net->w[l] = w_gates[l].flat<float>().data();
      net->bias[l] = ShiftedBias(b_gates[l], dims[l].h, forget_bias_);
      net->w_pairs[l] = GatePairs(bf16_, dims[l], net->w[l]);
      net->widest = std::max(net->widest, dims[l].h);
    }
    net->w_last = w_out.flat<float>().data();
    net->b_last = b_out.flat<float>()(0);
  }

  // The update over every tile.
  void Run(OpKernelContext* ctx, const Network& net, const Step& s) const {
    const std::vector<Dims>& dims = net.dims;
    const int num_layers = dims.size();
    const int64_t n = s.n;
    if (n == 0) return;
    // As preprocess.adam_normalized computes them, in float32.
    const float correction1 = 1.0f - std::pow(beta1_, s.count);
    const float correction2 = 1.0f - std::pow(beta2_, s.count);
    const float log_eps = std::numeric_limits<float>::epsilon();
    const float e_k = static_cast<float>(std::exp(static_cast<double>(k_)));
    const int64_t num_tiles = (n + kTile - 1) / kTile;
    const int widest = net.widest;
    ForEachTileRun(ctx, num_tiles, [&](int64_t t0, int64_t t1, int64_t) {
      // The layer's input rows, then its hidden rows: the stacked [x; h] of ForwardTile.
      Buffer stacked((2 * widest) * kTile), gates(4 * widest * kTile), state(widest * kTile),
          output(widest * kTile), grad(kTile), first(kTile), second(kTile);
      std::vector<uint32_t> stacked_pairs(widest * kTile);
      for (int64_t tile = t0; tile < t1; ++tile) {
        const int64_t col0 = tile * kTile;
        const int width = static_cast<int>(std::min<int64_t>(kTile, n - col0));
        LoadTile(s.g, 1, n, col0, width, grad.data());
        ArrayMap gm(grad.data(), kTile), x0(stacked.data(), kTile);
        if (preprocess_ == "identity") {
          x0 = gm;
        } else if (preprocess_ == "log_and_sign") {
          ArrayMap x1(stacked.data() + kTile, kTile);
          x0 = ((gm.abs() + log_eps).log() / k_).max(-1.0f);
          x1 = (gm * e_k).max(-1.0f).min(1.0f);
        } else {
          LoadTile(s.m, 1, n, col0, width, first.data());
          LoadTile(s.v, 1, n, col0, width, second.data());
          ArrayMap mm(first.data(), kTile), vm(second.data(), kTile),
              x1(stacked.data() + kTile, kTile);
          mm = beta1_ * mm + beta1_complement_ * gm;
          vm = beta2_ * vm + beta2_complement_ * gm.square();
          // root in `output`, free until the first layer writes it
          ArrayMap root(output.data(), kTile);
          root = (vm / correction2).sqrt() + epsilon_;
          x0 = gm / root;
          x1 = mm / correction1 / root;
          StoreTile(first.data(), 1, n, col0, width, s.m_out);
          StoreTile(second.data(), 1, n, col0, width, s.v_out);
        }
        for (int l = 0; l < num_layers; ++l) {
          const Dims& d = dims[l];
          const int H = d.h * kTile;
          if (l > 0) std::copy_n(output.data(), dims[l - 1].h * kTile, stacked.data());
          LoadTile(s.h[l], d.h, n, col0, width, stacked.data() + d.k * kTile);
          LoadTile(s.c[l], d.h, n, col0, width, state.data());
          ForwardTile(d, net.w[l], OrNull(net.w_pairs[l]), net.bias[l].data(), stacked.data(),
                      stacked_pairs.data(), gates.data(), state.data());
          HiddenOutput(bf16_, gates.data() + 3 * H, state.data(), output.data(), H);
          StoreTile(output.data(), d.h, n, col0, width, s.h_out[l]);
          StoreTile(state.data(), d.h, n, col0, width, s.c_out[l]);
        }
        // update = scale (w_out^T h + b_out), h the last layer's output
        const int last = dims[num_layers - 1].h;
        ArrayMap um(first.data(), kTile);
        um.setConstant(0.0f);
        for (int r = 0; r < last; ++r) {
          um += net.w_last[r] * ArrayMap(output.data() + r * kTile, kTile);
        }
        um = (um + net.b_last) * scale_;
        StoreTile(first.data(), 1, n, col0, width, s.update);
      }
    });
  }

  std::string preprocess_;
  float k_, beta1_, beta2_, beta1_complement_, beta2_complement_, epsilon_, forget_bias_,
      scale_;
  bool bf16_;
};

class FusedLearnedStepOp : public LearnedStepBase {
 public:
  using LearnedStepBase::LearnedStepBase;

  void Compute(OpKernelContext* ctx) override {
    tensorflow::OpInputList hidden, cell;
    OP_REQUIRES_OK(ctx, ctx->input_list("hidden", &hidden));
    OP_REQUIRES_OK(ctx, ctx->input_list("cell", &cell));
    const Tensor& g = ctx->input(0);
    const Tensor& m = ctx->input(1);
    const Tensor& v = ctx->input(2);
    const Tensor& count = ctx->input(3);
    const int num_layers = hidden.size();
    Step s;
    s.n = g.NumElements();
    CheckCountAndMoments(ctx, s.n, count, m, v);
    if (!ctx->status().ok()) return;
    std::vector<const Tensor*> hidden_in(num_layers), cell_in(num_layers);
    for (int l = 0; l < num_layers; ++l) {
      hidden_in[l] = &hidden[l];
      cell_in[l] = &cell[l];
    }
    Network net;
    ReadNetwork(ctx, s.n, hidden_in, cell_in, &net);
    if (!ctx->status().ok()) return;
    Tensor* update_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, g.shape(), &update_out));
    if (adam()) {
      Tensor *m_out, *v_out;
      OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 1, m.shape(), &m_out));
      OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({2}, 2, v.shape(), &v_out));
      s.m = m.flat<float>().data();
      s.v = v.flat<float>().data();
      s.m_out = m_out->flat<float>().data();
      s.v_out = v_out->flat<float>().data();
    } else {
      ctx->set_output(1, m);
      ctx->set_output(2, v);
    }
    tensorflow::OpOutputList hidden_out, cell_out;
    OP_REQUIRES_OK(ctx, ctx->output_list("hidden_next", &hidden_out));
    OP_REQUIRES_OK(ctx, ctx->output_list("cell_next", &cell_out));
    for (int l = 0; l < num_layers; ++l) {
      Tensor *h_next, *c_next;
      // Outputs 3 + l and 3 + L + l; inputs 4 + l and 4 + L + l (see kForwardNote).
      OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output(
                              {4 + l}, 3 + l, hidden[l].shape(), &h_next));
      OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output(
                              {4 + num_layers + l}, 3 + num_layers + l, cell[l].shape(),
                              &c_next));
      s.h.push_back(hidden[l].flat<float>().data());
      s.c.push_back(cell[l].flat<float>().data());
      s.h_out.push_back(h_next->flat<float>().data());
      s.c_out.push_back(c_next->flat<float>().data());
    }
    s.g = g.flat<float>().data();
    s.count = count.flat<float>()(0);
    s.update = update_out->flat<float>().data();
    Run(ctx, net, s);
  }
};

// Whether every element is finite: one pass, no branch a element.
bool AllFinite(const float* p, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof(bits));
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

class FusedLearnedStepInPlaceOp : public LearnedStepBase {
 public:
  using LearnedStepBase::LearnedStepBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& g = ctx->input(0);
    const Tensor& count = ctx->input(1);
    // The variables in input order: moments (m, v), then hidden, then cell.
    int start, stop;
    OP_REQUIRES_OK(ctx, ctx->op_kernel().InputRange("moments", &start, &stop));
    const int num_moments = stop - start;
    OP_REQUIRES(ctx, num_moments == (adam() ? 2 : 0),
                InvalidArgument("FusedLearnedStepInPlace: preprocess ", preprocess_, " takes ",
                                adam() ? 2 : 0, " moment variables; got ", num_moments));
    std::vector<tensorflow::core::RefCountPtr<tensorflow::Var>> vars;
    const int first = start;
    OP_REQUIRES_OK(ctx, ctx->op_kernel().InputRange("cell", &start, &stop));
    for (int i = first; i < stop; ++i) {
      tensorflow::core::RefCountPtr<tensorflow::Var> var;
      OP_REQUIRES_OK(ctx, tensorflow::LookupResource(ctx, tensorflow::HandleFromInput(ctx, i),
                                                     &var));
      vars.push_back(std::move(var));
    }
    // Held for the whole step, taken in address order as TensorFlow's own training ops take them.
    std::vector<tensorflow::mutex*> mutexes;
    for (const auto& var : vars) mutexes.push_back(var->mu());
    std::sort(mutexes.begin(), mutexes.end());
    mutexes.erase(std::unique(mutexes.begin(), mutexes.end()), mutexes.end());
    OP_REQUIRES(ctx, mutexes.size() == vars.size(),
                InvalidArgument("FusedLearnedStepInPlace: a variable is passed twice"));
    std::vector<std::unique_ptr<tensorflow::mutex_lock>> locks;
    for (tensorflow::mutex* mu : mutexes) {
      locks.push_back(std::make_unique<tensorflow::mutex_lock>(*mu));
    }
    for (size_t i = 0; i < vars.size(); ++i) {
      const Tensor& t = *vars[i]->tensor();
      OP_REQUIRES(ctx, vars[i]->is_initialized && t.dtype() == tensorflow::DT_FLOAT,
                  tensorflow::errors::FailedPrecondition(
                      "FusedLearnedStepInPlace: variable ", i, " is not an initialized float32 "
                      "variable"));
    }
    const int num_layers = (vars.size() - num_moments) / 2;
    Step s;
    s.n = g.NumElements();
    std::vector<const Tensor*> hidden(num_layers), cell(num_layers);
    for (int l = 0; l < num_layers; ++l) {
      hidden[l] = vars[num_moments + l]->tensor();
      cell[l] = vars[num_moments + num_layers + l]->tensor();
    }
    // Without moments (num_moments 0: not adam_normalized) m and v are not read.
    const Tensor& m = num_moments == 2 ? *vars[0]->tensor() : count;
    const Tensor& v = num_moments == 2 ? *vars[1]->tensor() : count;
    CheckCountAndMoments(ctx, s.n, count, m, v);
    if (!ctx->status().ok()) return;
    Network net;
    ReadNetwork(ctx, s.n, hidden, cell, &net);
    if (!ctx->status().ok()) return;
    Tensor* update_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, g.shape(), &update_out));
    s.g = g.flat<float>().data();
    s.count = count.flat<float>()(0);
    s.update = update_out->flat<float>().data();
    if (!AllFinite(s.g, s.n)) {
      std::fill_n(s.update, s.n, std::numeric_limits<float>::quiet_NaN());
      return;
    }
    // Each variable's new value goes where its old one is, unless another tensor (a value read
    // earlier and still alive) shares that buffer: then into a fresh buffer, swapped in after.
    std::vector<Tensor> fresh(vars.size());
    std::vector<bool> swapped(vars.size(), false);
    std::vector<const float*> in(vars.size());
    std::vector<float*> out(vars.size());
    for (size_t i = 0; i < vars.size(); ++i) {
      Tensor* t = vars[i]->tensor();
      in[i] = t->flat<float>().data();
      if (t->RefCountIsOne() && !vars[i]->copy_on_read_mode.load()) {
        out[i] = t->flat<float>().data();
      } else {
        OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, t->shape(), &fresh[i]));
        out[i] = fresh[i].flat<float>().data();
        swapped[i] = true;
      }
    }
    if (num_moments == 2) {
      s.m = in[0];
      s.v = in[1];
      s.m_out = out[0];
      s.v_out = out[1];
    }
    for (int l = 0; l < num_layers; ++l) {
      s.h.push_back(in[num_moments + l]);
      s.c.push_back(in[num_moments + num_layers + l]);
      s.h_out.push_back(out[num_moments + l]);
      s.c_out.push_back(out[num_moments + num_layers + l]);
    }
    Run(ctx, net, s);
    for (size_t i = 0; i < vars.size(); ++i) {
      if (swapped[i]) *vars[i]->tensor() = fresh[i];
    }
  }
};

}  // namespace

REGISTER_OP("FusedLstmCell")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("w: float")
    .Input("b: float")
    .Attr("forget_bias: float = 1.0")
    .Attr("matmul: {'float32', 'bfloat16'} = 'float32'")
    .Output("h_next: float")
    .Output("c_next: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(1));
      c->set_output(1, c->input(2));
      return tsl::OkStatus();
    });

REGISTER_OP("FusedLstmCellGrad")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("w: float")
    .Input("b: float")
    .Input("dh_next: float")
    .Input("dc_next: float")
    .Attr("forget_bias: float = 1.0")
    .Attr("matmul: {'float32', 'bfloat16'} = 'float32'")
    .Output("dx: float")
    .Output("dh: float")
    .Output("dc: float")
    .Output("dw: float")
    .Output("db: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(2));
      c->set_output(3, c->input(3));
      c->set_output(4, c->input(4));
      return tsl::OkStatus();
    });

REGISTER_OP("FusedLearnedStep")
    .Input("gradient: float")
    .Input("m: float")
    .Input("v: float")
    .Input("count: float")
    .Input("hidden: num_layers * float")
    .Input("cell: num_layers * float")
    .Input("w_gates: num_layers * float")
    .Input("b_gates: num_layers * float")
    .Input("w_out: float")
    .Input("b_out: float")
    .Attr("num_layers: int >= 1")
    .Attr("preprocess: string")
    .Attr("k: float = 5.0")
    .Attr("beta1: float = 0.9")
    .Attr("beta2: float = 0.999")
    .Attr("beta1_complement: float = 0.1")
    .Attr("beta2_complement: float = 0.001")
    .Attr("epsilon: float = 1e-8")
    .Attr("forget_bias: float = 1.0")
    .Attr("scale: float = 1.0")
    .Attr("matmul: {'float32', 'bfloat16'} = 'float32'")
    .Output("update: float")
    .Output("m_next: float")
    .Output("v_next: float")
    .Output("hidden_next: num_layers * float")
    .Output("cell_next: num_layers * float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int num_layers;
      TF_RETURN_IF_ERROR(c->GetAttr("num_layers", &num_layers));
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(2));
      for (int l = 0; l < num_layers; ++l) {
        c->set_output(3 + l, c->input(4 + l));
        c->set_output(3 + num_layers + l, c->input(4 + num_layers + l));
      }
      return tsl::OkStatus();
    });

REGISTER_OP("FusedLearnedStepInPlace")
    .Input("gradient: float")
    .Input("count: float")
    .Input("moments: num_moments * resource")
    .Input("hidden: num_layers * resource")
    .Input("cell: num_layers * resource")
    .Input("w_gates: num_layers * float")
    .Input("b_gates: num_layers * float")
    .Input("w_out: float")
    .Input("b_out: float")
    .Attr("num_moments: int >= 0")
    .Attr("num_layers: int >= 1")
    .Attr("preprocess: string")
    .Attr("k: float = 5.0")
    .Attr("beta1: float = 0.9")
    .Attr("beta2: float = 0.999")
    .Attr("beta1_complement: float = 0.1")
    .Attr("beta2_complement: float = 0.001")
    .Attr("epsilon: float = 1e-8")
    .Attr("forget_bias: float = 1.0")
    .Attr("scale: float = 1.0")
    .Attr("matmul: {'float32', 'bfloat16'} = 'float32'")
    .Output("update: float")
    .SetIsStateful()
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return tsl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("FusedLstmCell").Device(tensorflow::DEVICE_CPU), FusedLstmCellOp);
REGISTER_KERNEL_BUILDER(Name("FusedLstmCellGrad").Device(tensorflow::DEVICE_CPU),
                        FusedLstmCellGradOp);
REGISTER_KERNEL_BUILDER(Name("FusedLearnedStep").Device(tensorflow::DEVICE_CPU),
                        FusedLearnedStepOp);
REGISTER_KERNEL_BUILDER(Name("FusedLearnedStepInPlace").Device(tensorflow::DEVICE_CPU),
                        FusedLearnedStepInPlaceOp);
