/// `google.protobuf.Value`.
public indirect enum ProtoValue: Equatable, Sendable {
    case null
    case number(Double)
    case string(String)
    case bool(Bool)
    case structValue(ProtoStruct)
    case list([ProtoValue])
}

/// `google.protobuf.Struct`: a string-keyed map of `ProtoValue`.
///
/// Fields keep insertion order so encoding is deterministic; equality compares the
/// fields pairwise in order. Keys are unique when built through `set`/subscript or
/// by decoding (duplicate keys on the wire: last wins, in place of the first).
public struct ProtoStruct: Equatable, Sendable, ExpressibleByDictionaryLiteral {
    public var fields: [(String, ProtoValue)]

    @inlinable
    public init() { fields = [] }

    @inlinable
    public init(_ fields: [(String, ProtoValue)]) { self.fields = fields }

    public init(dictionaryLiteral elements: (String, ProtoValue)...) {
        fields = []
        fields.reserveCapacity(elements.count)
        for (k, v) in elements { set(k, v) }
    }

    @inlinable public var isEmpty: Bool { fields.isEmpty }
    @inlinable public var count: Int { fields.count }

    /// Value for `key` (the last one if the fields array holds duplicates).
    /// Setting `nil` removes every entry with that key.
    public subscript(key: String) -> ProtoValue? {
        get {
            var i = fields.count
            while i > 0 {
                i -= 1
                if fields[i].0 == key { return fields[i].1 }
            }
            return nil
        }
        set {
            if let newValue { set(key, newValue) } else { remove(key) }
        }
    }

    /// Replaces the value of an existing `key` in place, or appends.
    public mutating func set(_ key: String, _ value: ProtoValue) {
        var i = fields.count
        while i > 0 {
            i -= 1
            if fields[i].0 == key {
                fields[i].1 = value
                return
            }
        }
        fields.append((key, value))
    }

    public mutating func remove(_ key: String) {
        fields.removeAll { $0.0 == key }
    }

    public static func == (lhs: ProtoStruct, rhs: ProtoStruct) -> Bool {
        guard lhs.fields.count == rhs.fields.count else { return false }
        for i in lhs.fields.indices {
            guard lhs.fields[i].0 == rhs.fields[i].0, lhs.fields[i].1 == rhs.fields[i].1 else { return false }
        }
        return true
    }
}

// MARK: - Encoding

extension ProtoStruct {
    /// Writes the Struct's fields (without an outer tag): `fields` map entries in
    /// insertion order, each entry always carrying key (1) and value (2).
    public func encode(into w: inout WireWriter) {
        for (key, value) in fields {
            w.writeMessage(field: 1) { e in
                e.writeString(field: 1, key, emitDefault: true)
                e.writeMessage(field: 2) { value.encode(into: &$0) }
            }
        }
    }

    /// The encoded Struct message.
    public func encoded() -> [UInt8] {
        var w = WireWriter()
        encode(into: &w)
        return w.bytes
    }
}

extension ProtoValue {
    /// Writes the Value's fields (without an outer tag). The oneof member is always
    /// emitted, even when it holds a default (`20 00` for false, `08 00` for null).
    public func encode(into w: inout WireWriter) {
        switch self {
        case .null:
            w.writeVarintField(field: 1, 0, emitDefault: true)
        case .number(let d):
            w.writeDouble(field: 2, d, emitDefault: true)
        case .string(let s):
            w.writeString(field: 3, s, emitDefault: true)
        case .bool(let b):
            w.writeBool(field: 4, b, emitDefault: true)
        case .structValue(let s):
            w.writeMessage(field: 5) { s.encode(into: &$0) }
        case .list(let values):
            w.writeMessage(field: 6) { l in
                for v in values {
                    l.writeMessage(field: 1) { v.encode(into: &$0) }
                }
            }
        }
    }
}

extension WireWriter {
    /// Writes `value` as a `google.protobuf.Struct` message field.
    public mutating func writeStruct(field: Int, _ value: ProtoStruct) {
        writeMessage(field: field) { value.encode(into: &$0) }
    }
}

// MARK: - Decoding

extension ProtoStruct {
    /// Maximum Struct/ListValue nesting accepted by the decoder.
    public static let maxNestingDepth = 32

    /// Decodes a `google.protobuf.Struct` message occupying the whole buffer.
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> ProtoStruct {
        var s = ProtoStruct()
        try s.merge(from: WireReader(buffer), depth: 1)
        return s
    }

    public static func decode(_ bytes: [UInt8]) throws(ProtoDecodingError) -> ProtoStruct {
        try withBytes(bytes) { (raw) throws(ProtoDecodingError) -> ProtoStruct in try decode(raw) }
    }

    /// Merges the Struct message read by `reader` (restricted to the message) into
    /// `self`: map entries are added, an existing key is replaced (last wins).
    /// `depth` is the nesting level of this Struct (1 for a top-level Struct).
    public mutating func merge(from reader: WireReader, depth: Int) throws(ProtoDecodingError) {
        guard depth <= ProtoStruct.maxNestingDepth else {
            throw ProtoDecodingError(.nestingTooDeep(limit: ProtoStruct.maxNestingDepth), offset: reader.offset)
        }
        var r = reader
        var index = KeyIndex()
        while let (field, wireType) = try r.readTag() {
            guard field == 1, wireType == 2 else {
                try r.skip(wireType: wireType, field: field)
                continue
            }
            let entry = try r.readLengthDelimited()
            var e = r.subReader(entry)
            var keyRange = 0..<0
            var value: ProtoValue? = nil
            while let (f, wt) = try e.readTag() {
                switch (f, wt) {
                case (1, 2):
                    keyRange = try e.readLengthDelimited()
                case (2, 2):
                    let vr = try e.readLengthDelimited()
                    try ProtoValue.merge(into: &value, from: e.subReader(vr), depth: depth)
                default:
                    try e.skip(wireType: wt, field: f)
                }
            }
            index.upsert(&fields, key: e.string(in: keyRange), value: value ?? .null)
        }
    }
}

extension ProtoValue {
    /// Decodes a `google.protobuf.Value` message occupying the whole buffer.
    /// A Value with no kind set decodes as `.null`.
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> ProtoValue {
        var v: ProtoValue? = nil
        try merge(into: &v, from: WireReader(buffer), depth: 0)
        return v ?? .null
    }

    /// Merges a Value message into `value` (nil = kind not set). A different kind
    /// replaces the current one; a second struct_value merges, a second list_value
    /// appends. `depth` is the nesting level of the enclosing Struct/ListValue.
    static func merge(into value: inout ProtoValue?, from reader: WireReader, depth: Int) throws(ProtoDecodingError) {
        var r = reader
        while let (field, wireType) = try r.readTag() {
            switch (field, wireType) {
            case (1, 0):
                _ = try r.readVarint()
                value = .null
            case (2, 1):
                value = .number(try r.readDouble())
            case (3, 2):
                value = .string(try r.readString())
            case (4, 0):
                value = .bool(try r.readBool())
            case (5, 2):
                let range = try r.readLengthDelimited()
                var s: ProtoStruct
                if case .structValue(let existing)? = value { s = existing } else { s = ProtoStruct() }
                value = nil  // drop the reference so `s` is uniquely owned
                try s.merge(from: r.subReader(range), depth: depth + 1)
                value = .structValue(s)
            case (6, 2):
                let range = try r.readLengthDelimited()
                var list: [ProtoValue]
                if case .list(let existing)? = value { list = existing } else { list = [] }
                value = nil
                try mergeList(into: &list, from: r.subReader(range), depth: depth + 1)
                value = .list(list)
            default:
                try r.skip(wireType: wireType, field: field)
            }
        }
    }

    static func mergeList(into list: inout [ProtoValue], from reader: WireReader, depth: Int) throws(ProtoDecodingError) {
        guard depth <= ProtoStruct.maxNestingDepth else {
            throw ProtoDecodingError(.nestingTooDeep(limit: ProtoStruct.maxNestingDepth), offset: reader.offset)
        }
        var r = reader
        while let (field, wireType) = try r.readTag() {
            guard field == 1, wireType == 2 else {
                try r.skip(wireType: wireType, field: field)
                continue
            }
            let range = try r.readLengthDelimited()
            var v: ProtoValue? = nil
            try merge(into: &v, from: r.subReader(range), depth: depth)
            list.append(v ?? .null)
        }
    }
}

/// Keeps map decoding linear: small maps use a backwards scan, larger ones a
/// lazily built key -> position index (avoids quadratic work on hostile input).
struct KeyIndex {
    private var positions: [String: Int]? = nil
    private static let threshold = 16

    mutating func upsert<V>(_ entries: inout [(String, V)], key: String, value: V) {
        if entries.count < KeyIndex.threshold && positions == nil {
            var i = entries.count
            while i > 0 {
                i -= 1
                if entries[i].0 == key {
                    entries[i].1 = value
                    return
                }
            }
            entries.append((key, value))
            return
        }
        if positions == nil {
            var p = [String: Int](minimumCapacity: entries.count * 2)
            for (i, e) in entries.enumerated() { p[e.0] = i }
            positions = p
        }
        if let i = positions![key] {
            entries[i].1 = value
        } else {
            positions![key] = entries.count
            entries.append((key, value))
        }
    }
}
