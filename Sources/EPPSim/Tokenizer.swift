/// The simulator's deterministic tokenizer.
///
/// It is not a real BPE tokenizer, but its token boundaries depend on the text the way a real
/// one's do (they do *not* line up with fixed character blocks), so a router that hashes raw
/// character chunks sees different boundaries than the engine's KV cache.
///
/// Pre-tokenisation rules, applied left to right over Unicode scalars:
/// 1. A *word* is a maximal run of letters/digits/`_`. It is split into pieces of at most
///    ``maxPieceScalars`` (4) scalars; the first piece carries the run of horizontal whitespace
///    (spaces, tabs) that precedes the word ("whitespace attached to the following word").
/// 2. Any other non-whitespace scalar (punctuation, symbols) is one piece, also carrying the
///    preceding horizontal whitespace.
/// 3. Every newline (`\n`, `\r`) is its own piece; whitespace before a newline or at the end of
///    the text is a piece of its own.
/// 4. A special token `<|name|>` (name = letters/digits/`_`) is one piece and never absorbs
///    whitespace (used by the chat template).
///
/// Token id of a piece = FNV-1a 32-bit hash of its UTF-8 bytes, modulo ``vocabSize`` (50 000),
/// plus ``idOffset`` (100) — stable across runs and platforms.
///
/// Consequence used by the load generator: a text made of words of at most 4 letters, each
/// preceded by one space (`" the cat ran"`), has exactly one token per word.
public struct SimTokenizer: Sendable {
    public static let vocabSize: UInt32 = 50_000
    public static let idOffset = 100
    public static let maxPieceScalars = 4

    public init() {}

    /// Token ids of `text`.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 1)
        Self.forEachPiece(text) { ids.append(Self.tokenID(scalars: $0)) }
        return ids
    }

    /// The pieces (token strings) of `text`, in order.
    public func pieces(_ text: String) -> [String] {
        var out: [String] = []
        Self.forEachPiece(text) { slice in
            var s = String.UnicodeScalarView()
            s.append(contentsOf: slice)
            out.append(String(s))
        }
        return out
    }

    /// Token id of one piece.
    public static func tokenID(_ piece: String) -> Int {
        tokenID(scalars: ArraySlice(piece.unicodeScalars))
    }

    static func tokenID(scalars: ArraySlice<Unicode.Scalar>) -> Int {
        var h: UInt32 = 2_166_136_261
        for scalar in scalars {
            for byte in UTF8.encode(scalar)! {
                h ^= UInt32(byte)
                h = h &* 16_777_619
            }
        }
        return Int(h % vocabSize) + idOffset
    }

    @inline(__always) static func isNewline(_ c: Unicode.Scalar) -> Bool { c == "\n" || c == "\r" }
    @inline(__always) static func isSpace(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || (c.value > 127 && c.properties.isWhitespace && !isNewline(c))
    }
    @inline(__always) static func isWordChar(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x5F: return true
        case 0..<128: return false
        default: return c.properties.isAlphabetic || c.properties.numericType != nil
        }
    }

    /// Length of a special token `<|name|>` starting at `i`, or 0.
    static func specialTokenLength(_ s: [Unicode.Scalar], at i: Int) -> Int {
        let n = s.count
        guard i + 4 < n, s[i] == "<", s[i + 1] == "|" else { return 0 }
        var j = i + 2
        while j < n, isWordChar(s[j]), s[j].value < 128 { j += 1 }
        guard j > i + 2, j + 1 < n, s[j] == "|", s[j + 1] == ">" else { return 0 }
        return j + 2 - i
    }

    static func forEachPiece(_ text: String, _ emit: (ArraySlice<Unicode.Scalar>) -> Void) {
        let s = Array(text.unicodeScalars)
        let n = s.count
        var i = 0
        while i < n {
            let start = i
            while i < n, isSpace(s[i]) { i += 1 }
            if i == n {
                emit(s[start..<n])
                break
            }
            let c = s[i]
            if isNewline(c) {
                if i > start { emit(s[start..<i]) }
                emit(s[i..<(i + 1)])
                i += 1
                continue
            }
            if c == "<" {
                let len = specialTokenLength(s, at: i)
                if len > 0 {
                    if i > start { emit(s[start..<i]) }
                    emit(s[i..<(i + len)])
                    i += len
                    continue
                }
            }
            if isWordChar(c) {
                var j = i
                while j < n, isWordChar(s[j]) { j += 1 }
                var pieceStart = start
                var p = i
                while p < j {
                    let e = min(p + maxPieceScalars, j)
                    emit(s[pieceStart..<e])
                    pieceStart = e
                    p = e
                }
                i = j
                continue
            }
            emit(s[start...i])
            i += 1
        }
    }
}

/// One chat message as seen by the simulator's chat template.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// The simulator's fixed chat template.
///
/// Each message is rendered as `<|ROLE|>\nCONTENT\n` (ROLE = the message's role, e.g. `system`,
/// `user`, `assistant`, `tool`); with `add_generation_prompt` (default `true`) the text ends with
/// `<|assistant|>\n`. Example for `[system "Be brief.", user "Hi"]`:
/// ```
/// <|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n
/// ```
/// Content given as a list of parts joins the `text` parts with `\n`; each `image_url` part
/// renders as the special token `<|image|>`. A missing/null content renders as empty.
/// Each `<|ROLE|>` marker is one token, each `\n` is one token.
public enum ChatTemplate {
    public static func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        for m in messages {
            out += "<|\(m.role)|>\n\(m.content)\n"
        }
        if addGenerationPrompt { out += "<|assistant|>\n" }
        return out
    }

    /// Parse OpenAI `messages` JSON into chat messages (see the type's documentation for content parts).
    public static func messages(from json: JSON) -> [ChatMessage]? {
        guard let arr = json.arrayValue else { return nil }
        var out: [ChatMessage] = []
        for m in arr {
            guard let role = m["role"]?.stringValue else { return nil }
            var content = ""
            switch m["content"] {
            case .string(let s)?: content = s
            case .array(let parts)?:
                var texts: [String] = []
                for p in parts {
                    if let t = p["text"]?.stringValue { texts.append(t) }
                    else if p["type"]?.stringValue == "image_url" { texts.append("<|image|>") }
                }
                content = texts.joined(separator: "\n")
            default: content = ""
            }
            out.append(ChatMessage(role: role, content: content))
        }
        return out
    }
}

/// Deterministic generated text: every output token is `" " + word` with a word of at most four
/// letters from ``words``, i.e. exactly one simulator token per word. The load generator (EPPLoad)
/// carries a copy of the same list.
public enum SimText {
    public static let words: [String] = [
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
        "on", "not", "he", "this", "are", "or", "his", "from", "at", "but", "have", "an", "they",
        "one", "you", "were", "her", "all", "she", "when", "can", "who", "will", "more", "no", "if",
        "out", "so", "said", "what", "up", "its", "into", "than", "them", "only", "new", "some",
        "time", "two", "may", "then", "do", "any", "like", "my", "now", "over", "such", "our",
        "man", "me", "even", "most", "made", "also", "did", "many", "well", "way", "down", "old",
        "year", "work", "just", "long", "used", "much", "high", "good", "life", "know", "take",
        "need", "far", "each", "make", "part", "both", "few", "less", "very", "here", "best", "cat",
        "dog", "sun", "red", "blue", "fish", "tree", "road", "rain", "snow", "wind", "fire", "gold",
        "iron", "milk", "rice", "salt", "ship", "star", "moon", "king", "city", "door", "book",
    ]

    /// `count` output pieces (each `" word"`), chosen deterministically from `seed`.
    public static func outputPieces(count: Int, seed: UInt64) -> [String] {
        var rng = SplitMix64(seed: seed)
        return (0..<max(0, count)).map { _ in " " + words[Int(rng.next() % UInt64(words.count))] }
    }
}

/// Small, fast, seedable PRNG (SplitMix64).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform double in [0, 1).
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
