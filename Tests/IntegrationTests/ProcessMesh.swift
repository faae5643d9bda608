import Foundation

/// Real node processes on ::1 that a test reads through their control sockets. The gossip and
/// discovery process tests start their meshes differently; how they read them is shared here.
protocol ProcessMesh: AnyObject {
    /// Node ids by node index.
    var ids: [String] { get }
    /// Control socket path of node i.
    func socket(_ i: Int) -> String
}

extension ProcessMesh {
    /// node id → state, as node i's `members --json` says.
    func states(_ i: Int) -> [String: String] {
        guard let r = try? runIotaf(["members", "--control", socket(i), "--json"]), r.status == 0,
              let arr = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]] else { return [:] }
        var out: [String: String] = [:]
        for m in arr { if let id = m["node_id"] as? String, let s = m["state"] as? String { out[id] = s } }
        return out
    }

    /// Waits until every observer sees every subject (other than itself) in `state`; also returns
    /// what each observer saw last, for the failure message.
    func waitUntil(_ observers: [Int], see subjects: [Int], _ state: String, within seconds: Double) -> (Bool, String) {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < deadline {
            var ok = true
            last = ""
            for o in observers {
                let st = states(o)
                last += "node \(o): \(subjects.map { st[ids[$0]] ?? "unknown" }) "
                if subjects.contains(where: { $0 != o && st[ids[$0]] != state }) { ok = false }
            }
            if ok { return (true, last) }
            Thread.sleep(forTimeInterval: 0.3)
        }
        return (false, last)
    }
}
