// Intel ISA-L erasure coding (Debian libisal-dev): SIMD GF(2^8) matrix multiply for Reed-Solomon.
#include <isa-l/erasure_code.h>
