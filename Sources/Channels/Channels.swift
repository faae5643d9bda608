/// Channels: reliable ordered messages over datagrams. See Docs/channels.md.
public enum ChannelsModule {}
