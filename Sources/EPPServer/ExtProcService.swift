import EPPGRPC
import EPPPicker

/// Adapts one gRPC `Process` call to the ext_proc stream state machine.
final class ExtProcCall: GRPCMethodHandler, ExtProcOutput {
    private unowned let call: GRPCCall
    private var stream: ExtProcStream!

    init(call: GRPCCall, scheduler: RequestScheduler, limits: ExtProcLimits, observer: ExtProcObserver?) {
        self.call = call
        stream = ExtProcStream(output: self, scheduler: scheduler, limits: limits, observer: observer)
    }

    func received(_ call: GRPCCall, message: UnsafeRawBufferPointer) { stream.receive(message) }
    func clientHalfClosed(_ call: GRPCCall) { stream.clientHalfClosed() }
    func callEnded(_ call: GRPCCall, reason: GRPCCall.EndReason) { stream.streamEnded() }

    // ExtProcOutput
    func send(_ appendFramed: (inout [UInt8]) -> Void) { call.send(appendFramed) }
    func fail(code: Int, message: String) {
        call.finish(GRPCStatus(GRPCStatusCode(rawValue: code) ?? .unknown, message))
    }
    func finishOK() { call.finish(.ok) }
    func chargeBufferedInput(_ bytes: Int) -> Bool { call.chargeBufferedInput(bytes) }
    func releaseBufferedInput(_ bytes: Int) { call.releaseBufferedInput(bytes) }
}

public enum GRPCPaths {
    public static let extProcProcess = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
    public static let healthCheck = "/grpc.health.v1.Health/Check"
    public static let healthWatch = "/grpc.health.v1.Health/Watch"
}
