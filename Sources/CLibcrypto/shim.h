// OpenSSL's libcrypto (Debian libssl-dev), used only for SHA-256: it runs on the CPU's SHA
// instructions (x86 SHA-NI, ARMv8 crypto extensions), about twice libsodium's BLAKE2b.
#include <openssl/sha.h>
