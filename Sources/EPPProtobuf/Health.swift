// grpc.health.v1 messages.

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
public enum ServingStatus: Int, Sendable, CaseIterable {
    case unknown = 0
    case serving = 1
    case notServing = 2
    /// Used only by Watch.
    case serviceUnknown = 3
}

/// `grpc.health.v1.HealthCheckRequest { string service = 1; }`
public enum HealthCheckRequest {
    /// Returns the requested service name ("" = whole server).
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> String {
        var r = WireReader(buffer)
        var service = ""
        while let (field, wireType) = try r.readTag() {
            if field == 1, wireType == 2 { service = try r.readString() } else { try r.skip(wireType: wireType, field: field) }
        }
        return service
    }

    public static func decode(_ bytes: [UInt8]) throws(ProtoDecodingError) -> String {
        try withBytes(bytes) { (raw) throws(ProtoDecodingError) -> String in try decode(raw) }
    }

    public static func encode(service: String, into w: inout WireWriter) {
        w.writeString(field: 1, service)
    }
}

/// `grpc.health.v1.HealthCheckResponse { ServingStatus status = 1; }`
public enum HealthCheckResponse {
    public typealias ServingStatus = EPPProtobuf.ServingStatus

    public static func encode(status: ServingStatus, into w: inout WireWriter) {
        w.writeVarintField(field: 1, UInt64(status.rawValue))
    }

    /// `08 01` for SERVING; empty for UNKNOWN (proto3 default).
    public static func encode(status: ServingStatus) -> [UInt8] {
        var w = WireWriter(reservingCapacity: 2)
        encode(status: status, into: &w)
        return w.bytes
    }

    /// Returns the raw status number (unknown values kept).
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> Int {
        var r = WireReader(buffer)
        var status = 0
        while let (field, wireType) = try r.readTag() {
            if field == 1, wireType == 0 {
                status = Int(Int32(truncatingIfNeeded: try r.readVarint()))
            } else {
                try r.skip(wireType: wireType, field: field)
            }
        }
        return status
    }

    public static func decode(_ bytes: [UInt8]) throws(ProtoDecodingError) -> Int {
        try withBytes(bytes) { (raw) throws(ProtoDecodingError) -> Int in try decode(raw) }
    }
}

/// `grpc.health.v1.HealthListResponse { map<string, HealthCheckResponse> statuses = 1; }`
public enum HealthListResponse {
    /// Entries in the given order; each entry carries key and value.
    public static func encode(statuses: [(String, ServingStatus)], into w: inout WireWriter) {
        for (service, status) in statuses {
            w.writeMessage(field: 1) { e in
                e.writeString(field: 1, service, emitDefault: true)
                e.writeMessage(field: 2) { HealthCheckResponse.encode(status: status, into: &$0) }
            }
        }
    }

    public static func encode(statuses: [(String, ServingStatus)]) -> [UInt8] {
        var w = WireWriter()
        encode(statuses: statuses, into: &w)
        return w.bytes
    }

    /// Decodes into (service, raw status) pairs; duplicate keys: last wins.
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(ProtoDecodingError) -> [(String, Int)] {
        var r = WireReader(buffer)
        var result: [(String, Int)] = []
        var index = KeyIndex()
        while let (field, wireType) = try r.readTag() {
            guard field == 1, wireType == 2 else { try r.skip(wireType: wireType, field: field); continue }
            var e = r.subReader(try r.readLengthDelimited())
            var key = ""
            var status = 0
            while let (f, wt) = try e.readTag() {
                switch (f, wt) {
                case (1, 2): key = try e.readString()
                case (2, 2): status = try HealthCheckResponse.decode(UnsafeRawBufferPointer(rebasing: e.buffer[try e.readLengthDelimited()]))
                default: try e.skip(wireType: wt, field: f)
                }
            }
            index.upsert(&result, key: key, value: status)
        }
        return result
    }
}
