import Foundation

/// Minimal SVG line plots and graphs, so results a person looks at are pictures too.
public enum SVGPlot {
    public static func line(title: String, xLabel: String, yLabel: String, points: [(Double, Double)],
                            yRange: ClosedRange<Double>? = nil, markers: [Double] = []) -> String {
        let w = 640.0, h = 360.0, left = 60.0, right = 20.0, top = 40.0, bottom = 50.0
        let xs = points.map(\.0), ys = points.map(\.1)
        let x0 = xs.min() ?? 0, x1 = max((xs.max() ?? 1), x0 + 1e-9)
        let y0 = yRange?.lowerBound ?? min(0, ys.min() ?? 0)
        let y1 = max(yRange?.upperBound ?? (ys.max() ?? 1), y0 + 1e-9)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (w - left - right) }
        func py(_ y: Double) -> Double { h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        s += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
        for k in 0...4 {
            let fx = x0 + (x1 - x0) * Double(k) / 4, fy = y0 + (y1 - y0) * Double(k) / 4
            s += "<text x=\"\(fmt(px(fx)))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">\(short(fx))</text>\n"
            s += "<text x=\"\(left - 6)\" y=\"\(fmt(py(fy) + 4))\" text-anchor=\"end\">\(short(fy))</text>\n"
            s += "<line x1=\"\(left)\" y1=\"\(fmt(py(fy)))\" x2=\"\(w - right)\" y2=\"\(fmt(py(fy)))\" stroke=\"#ddd\"/>\n"
        }
        s += "<text x=\"\(w / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        s += "<text x=\"16\" y=\"\(h / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(h / 2))\">\(escape(yLabel))</text>\n"
        // Timeline events (crash, partition, heal…) as dashed verticals, so cause and effect line up.
        for m in markers where m >= x0 && m <= x1 {
            s += "<line x1=\"\(fmt(px(m)))\" y1=\"\(top)\" x2=\"\(fmt(px(m)))\" y2=\"\(h - bottom)\" stroke=\"#d62728\" stroke-dasharray=\"4 3\" opacity=\"0.6\"/>\n"
        }
        let path = points.map { "\(fmt(px($0.0))),\(fmt(py($0.1)))" }.joined(separator: " ")
        s += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"\(path)\"/>\n</svg>\n"
        return s
    }

    /// Several labelled series on shared axes (e.g. goodput against loss, one line per RTT).
    public static func lines(title: String, xLabel: String, yLabel: String, series: [(label: String, points: [(Double, Double)])],
                             yRange: ClosedRange<Double>? = nil) -> String {
        let w = 640.0, h = 380.0, left = 60.0, right = 130.0, top = 40.0, bottom = 50.0
        let all = series.flatMap(\.points)
        let xs = all.map(\.0), ys = all.map(\.1)
        let x0 = xs.min() ?? 0, x1 = max((xs.max() ?? 1), x0 + 1e-9)
        let y0 = yRange?.lowerBound ?? min(0, ys.min() ?? 0)
        let y1 = max(yRange?.upperBound ?? (ys.max() ?? 1), y0 + 1e-9)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (w - left - right) }
        func py(_ y: Double) -> Double { h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom) }
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\((w - right + left) / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        s += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
        for k in 0...4 {
            let fx = x0 + (x1 - x0) * Double(k) / 4, fy = y0 + (y1 - y0) * Double(k) / 4
            s += "<text x=\"\(fmt(px(fx)))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">\(short(fx))</text>\n"
            s += "<text x=\"\(left - 6)\" y=\"\(fmt(py(fy) + 4))\" text-anchor=\"end\">\(short(fy))</text>\n"
            s += "<line x1=\"\(left)\" y1=\"\(fmt(py(fy)))\" x2=\"\(w - right)\" y2=\"\(fmt(py(fy)))\" stroke=\"#ddd\"/>\n"
        }
        s += "<text x=\"\((w - right + left) / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        s += "<text x=\"16\" y=\"\(h / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(h / 2))\">\(escape(yLabel))</text>\n"
        for (k, line) in series.enumerated() {
            let colour = palette[k % palette.count]
            let path = line.points.map { "\(fmt(px($0.0))),\(fmt(py($0.1)))" }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for p in line.points { s += "<circle cx=\"\(fmt(px(p.0)))\" cy=\"\(fmt(py(p.1)))\" r=\"2.5\" fill=\"\(colour)\"/>\n" }
            let ly = top + 10 + Double(k) * 18
            s += "<line x1=\"\(w - right + 10)\" y1=\"\(fmt(ly))\" x2=\"\(w - right + 30)\" y2=\"\(fmt(ly))\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
            s += "<text x=\"\(w - right + 36)\" y=\"\(fmt(ly + 4))\">\(escape(line.label))</text>\n"
        }
        return s + "</svg>\n"
    }

    /// Nodes on a circle, edges coloured by the state one node sees the other in.
    public static func topology(title: String, nodes: [String], edges: [(Int, Int, String)]) -> String {
        let w = 520.0, h = 520.0, cx = 260.0, cy = 270.0, r = 190.0
        let colour = ["alive": "#2ca02c", "suspect": "#ff7f0e", "dead": "#d62728", "unknown": "#999999"]
        func pos(_ i: Int) -> (Double, Double) {
            let a = 2 * Double.pi * Double(i) / Double(max(1, nodes.count)) - Double.pi / 2
            return (cx + r * cos(a), cy + r * sin(a))
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(w / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for (a, b, state) in edges {
            let (x1, y1) = pos(a), (x2, y2) = pos(b)
            s += "<line x1=\"\(fmt(x1))\" y1=\"\(fmt(y1))\" x2=\"\(fmt(x2))\" y2=\"\(fmt(y2))\" stroke=\"\(colour[state] ?? "#999")\" stroke-width=\"2\" opacity=\"0.6\"/>\n"
        }
        for (i, name) in nodes.enumerated() {
            let (x, y) = pos(i)
            s += "<circle cx=\"\(fmt(x))\" cy=\"\(fmt(y))\" r=\"16\" fill=\"#1f77b4\"/>\n"
            s += "<text x=\"\(fmt(x))\" y=\"\(fmt(y + 32))\" text-anchor=\"middle\">\(escape(name))</text>\n"
        }
        var ly = h - 14.0
        for (state, c) in colour.sorted(by: { $0.key < $1.key }) {
            s += "<text x=\"12\" y=\"\(ly)\" fill=\"\(c)\">— \(state)</text>\n"
            ly -= 16
        }
        return s + "</svg>\n"
    }

    static func fmt(_ d: Double) -> String { String(format: "%.1f", d) }
    static func short(_ d: Double) -> String { abs(d) >= 100 ? String(format: "%.0f", d) : String(format: "%.2f", d) }
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
