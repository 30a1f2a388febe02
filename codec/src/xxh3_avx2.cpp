// XXH3-128 streaming update compiled for AVX2 (this file alone gets -mavx2; hash.cpp calls it
// only when the CPU has AVX2). Debian's libxxhash is built for baseline x86-64 (SSE2), about
// half the speed on large inputs; inlining XXH3 here with a private symbol prefix keeps the
// library for everything else and gives the 1 GiB-hashing path the vector width it needs.
// The state layout is defined by the header alone, so both implementations share one state.
#define XXH_INLINE_ALL
#define XXH_NAMESPACE joblet_avx2_
#include <xxhash.h>

#include <cstddef>

namespace joblet::detail {

void xxh3_128_update_avx2(void* state, const void* data, std::size_t size) noexcept {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state), data, size);
}

}  // namespace joblet::detail
