import Testing
import Sessions
