/// Sessions between nodes: authenticated, encrypted, rekeyed datagram sessions on top of the Noise
/// framework. See Docs/noise.md, "Sessions between nodes".
///
/// Sans-IO like every core in iotaf: ``SessionManager`` never touches a socket or a clock. The
/// driver hands it datagrams and `now`, and sends, delivers and schedules what it returns.
///
/// - ``SessionManager``: the state machine (handshakes, transport, timers, DoS defence).
/// - ``SessionWire``: the datagram formats and their decoder (fuzzed in Fuzz/Sessions).
/// - ``NetworkSecrets``: the psk and mac keys derived from the mesh's network key.
public enum SessionsModule {}
