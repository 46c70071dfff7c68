import Foundation
import Testing

@testable import EPPSim

@Suite("JSON")
struct JSONTests {
    @Test func parsesAndRoundTrips() throws {
        let src = #"{"a":[1,-2,3.5,1e3,true,false,null],"s":"x\"y\\z\n\u00e9\ud83d\ude00/","o":{},"e":[], "big": 12345678901234567890}"#
        let j = try JSON.parse(src)
        #expect(j["a"] == [1, -2, 3.5, 1000.0, true, false, nil])
        #expect(j["s"]?.stringValue == "x\"y\\z\né😀/")
        #expect(j["o"] == .object([:]))
        #expect(j["e"] == .array([]))
        #expect(j["big"]?.doubleValue == 12345678901234567890.0)
        // Integral doubles serialise as integers, so compare serialised forms.
        #expect(try JSON.parse(j.serialized()).serialized() == j.serialized())
        // Agrees with Foundation on a random-ish document.
        let doc: [String: Any] = ["prompt": Array(0..<500), "text": "héllo \t \u{1} \"q\"", "n": -0.25]
        let data = try JSONSerialization.data(withJSONObject: doc)
        let p = try JSON.parse(data)
        #expect(p["prompt"]?.arrayValue?.count == 500)
        #expect(p["text"]?.stringValue == "héllo \t \u{1} \"q\"")
        #expect(p["n"]?.doubleValue == -0.25)
        let back = try JSONSerialization.jsonObject(with: Data(p.serialized().utf8)) as? [String: Any]
        #expect((back?["text"] as? String) == "héllo \t \u{1} \"q\"")
    }

    @Test func rejectsInvalid() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"abc", "01x", "[1] 2", "{\"a\":-}", "\"\u{1}\""] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSON.parse(bad) }
        }
    }
}
