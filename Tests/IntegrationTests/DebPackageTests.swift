import Foundation
import Testing

/// The Debian package (`make deb`), installed for real on this machine: opt-in, since it needs
/// the release build and root and changes the system (a user, /usr/bin/iotaf, /etc/iotaf):
///   make deb && IOTAF_DEB=out/iotaf_0.1.0_amd64.deb swift test --skip-build --filter DebPackageTests
/// It refuses to run when an iotaf package is already installed.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["IOTAF_DEB"] != nil && getuid() == 0))
struct DebPackageTests {
    static var deb: String { ProcessInfo.processInfo.environment["IOTAF_DEB"] ?? "" }
    static let unit = "/lib/systemd/system/iotaf.service"

    func sh(_ command: String) throws -> (status: Int32, out: String, err: String) {
        try runTool("/bin/sh", ["-c", command])
    }

    /// The unit's value of `key` (the last one, as systemd takes it).
    func unitValue(_ key: String) throws -> String? {
        let text = try String(contentsOfFile: Self.unit, encoding: .utf8)
        return text.split(separator: "\n").last { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    @Test func installRunAsTheUnitVerifyRemoveAndPurge() throws {
        #expect(FileManager.default.fileExists(atPath: Self.deb), "no package at \(Self.deb); run make deb")
        let already = try sh("dpkg-query -W -f='${Status}' iotaf 2>/dev/null")
        try #require(!already.out.contains("installed"), "an iotaf package is installed already; this test does not touch it")

        // Install.
        let install = try sh("dpkg -i '\(Self.deb)'")
        #expect(install.status == 0, "dpkg -i: \(install.err)")
        defer { _ = try? sh("dpkg -P iotaf >/dev/null 2>&1") }
        for path in ["/usr/bin/iotaf", Self.unit, "/etc/iotaf/iotaf.toml", "/var/lib/iotaf/identity.key"] {
            #expect(FileManager.default.fileExists(atPath: path), "\(path) installed")
        }
        #expect(try sh("getent passwd iotaf").out.contains("/usr/sbin/nologin"), "a system user without a shell")
        #expect(try sh("stat -c '%U %a' /var/lib/iotaf/identity.key").out.trimmingCharacters(in: .whitespacesAndNewlines) == "iotaf 600")
        #expect(try sh("stat -c '%U:%G %a' /etc/iotaf/iotaf.toml").out.trimmingCharacters(in: .whitespacesAndNewlines) == "root:iotaf 640")
        let control = try sh("dpkg-deb -f '\(Self.deb)' Depends").out
        for dep in ["libuv1", "libsodium23", "libsqlite3-0", "libc6"] { #expect(control.contains(dep), "Depends: \(control)") }

        // The unit verifies, and says what the issue asks for.
        let verify = try sh("systemd-analyze verify \(Self.unit)")
        #expect(verify.status == 0, "systemd-analyze verify: \(verify.out) \(verify.err)")
        #expect(try unitValue("User") == "iotaf")
        #expect(try unitValue("Restart") == "on-failure")
        #expect(try unitValue("StateDirectory") == "iotaf")
        #expect(try unitValue("ProtectSystem") == "strict")
        #expect(try unitValue("NoNewPrivileges") == "true")
        #expect(try unitValue("PrivateTmp") == "true")
        #expect(try unitValue("CapabilityBoundingSet") == "")
        #expect(try unitValue("ExecReload") == "/bin/kill -HUP $MAINPID")
        let execStart = try #require(try unitValue("ExecStart"))

        // The unit's command line as the unit's user, with what systemd would give it: the
        // runtime directory, an empty environment but PATH, no capabilities, no new privileges.
        _ = try sh("install -d -o iotaf -g iotaf -m 0750 /run/iotaf")
        let asUnit = "setpriv --reuid iotaf --regid iotaf --clear-groups --inh-caps=-all --no-new-privs env -i PATH=/usr/bin:/bin \(execStart)"
        // As shipped, the config holds a placeholder: the node refuses, naming it.
        let shipped = try sh("timeout 20 \(asUnit)")
        #expect(shipped.status == 1 && shipped.err.contains("CHANGE-ME"), "\(shipped.status) \(shipped.err)")
        // Configured as an operator would: a mesh key, the admin key line out, a local port.
        let port = freeUDPPort()
        _ = try sh("""
            /usr/bin/iotaf network init --out /etc/iotaf >/dev/null && chown iotaf:iotaf /etc/iotaf/network.key && chmod 0600 /etc/iotaf/network.key &&
            sed -i -e 's/^admin_keys = .*$//' -e 's/^listen = .*$/listen = "[::1]:\(port)"/' -e 's/^modes = .*$/modes = ["master"]/' \
                -e 's/^beacon_.*$//' /etc/iotaf/iotaf.toml
            """)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "exec \(asUnit)"]
        let log = "/tmp/iotaf-deb-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        var status = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, p.isRunning, !status.contains("node_id") {
            Thread.sleep(forTimeInterval: 0.3)
            status = (try? runIotaf(["status", "--json"]))?.out ?? ""  // found without flags: /etc/iotaf/*.toml names the socket
        }
        #expect(status.contains("\"listen\":\"[::1]:\(port)\""), "status as root through /run/iotaf: \(status) log: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        #expect(try sh("stat -c %U /var/lib/iotaf/peers.sqlite").out.hasPrefix("iotaf"), "the node writes its state as iotaf")
        kill(p.processIdentifier, SIGHUP)  // ExecReload
        Thread.sleep(forTimeInterval: 0.5)
        #expect(p.isRunning)
        #expect(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("config reload"))
        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)

        // Remove: the program and unit go, the data and config stay.
        let remove = try sh("dpkg -r iotaf")
        #expect(remove.status == 0, "dpkg -r: \(remove.err)")
        for gone in ["/usr/bin/iotaf", Self.unit, "/usr/share/doc/iotaf"] { #expect(!FileManager.default.fileExists(atPath: gone), "\(gone) removed") }
        #expect(FileManager.default.fileExists(atPath: "/var/lib/iotaf/identity.key"), "the identity survives a remove")
        #expect(FileManager.default.fileExists(atPath: "/etc/iotaf/iotaf.toml"), "the edited config survives a remove (a conffile)")
        // Purge: nothing left, the user neither.
        let purge = try sh("dpkg -P iotaf")
        #expect(purge.status == 0, "dpkg -P: \(purge.err)")
        for gone in ["/var/lib/iotaf", "/etc/iotaf", "/run/iotaf"] { #expect(!FileManager.default.fileExists(atPath: gone), "\(gone) purged") }
        #expect(try sh("getent passwd iotaf").status != 0, "the user is gone")
        let left = try sh("dpkg-query -W -f='${Status}' iotaf 2>/dev/null").out
        #expect(!left.contains("installed"), "dpkg no longer knows the package: \(left)")
    }
}
