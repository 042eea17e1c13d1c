// One step of the digests that tell "nothing changed" cheaply (the socket
// tracer's inputs, a handle's socket signature): splitmix64's finalizer over
// the running digest and the next value.
#pragma once

#include <cstdint>

namespace connleak {

inline uint64_t digest_mix(uint64_t h, uint64_t v)
{
    uint64_t z = h + 0x9e3779b97f4a7c15ULL + v;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace connleak
