/// Sessions between nodes. See Docs/noise.md.
public enum SessionsModule {}
