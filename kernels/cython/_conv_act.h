/* The conv forward's activation epilogue: relu applied in place on the output right after the
 * algorithm stored it (bias included), within the same kernel call: no second array, no
 * separate op.  NaN passes through (NaN < 0 is false), like the relu kernel. */
#include <stddef.h>
#define FC_CONV_RELU(T, SFX)                                                   \
static void fc_conv_relu_##SFX(T *y, ptrdiff_t n, int nt) {                    \
    ptrdiff_t i;                                                               \
    _Pragma("omp parallel for num_threads(nt) schedule(static)")              \
    for (i = 0; i < n; i++) y[i] = y[i] < 0 ? (T)0 : y[i];                     \
}
FC_CONV_RELU(float, f32)
FC_CONV_RELU(double, f64)
