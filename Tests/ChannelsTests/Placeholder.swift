import Testing
import Channels
