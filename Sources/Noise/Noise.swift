/// Noise Protocol Framework (revision 34) over libsodium. See Docs/noise.md.
public enum NoiseFramework {}
