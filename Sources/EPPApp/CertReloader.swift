import EPPHTTP2
import EPPObservability
import EPPPicker
import EPPServer
import Logging
import EPPLock

/// `--enable-cert-reload`: rebuilds the TLS context from `tls.crt`/`tls.key` (and the client CA) when they change
/// and hands the new immutable context to every loop for new handshakes; connections already established keep
/// theirs. A broken or half-written pair (key not matching the certificate yet) keeps the previous context, is
/// logged and counted; the next change of either file tries again.
final class CertReloader: Sendable {
    let certPath: String
    let clientCAFile: String?
    private let server: PickerServer
    private let logger: Logger
    private let results: Family<Counter>
    /// Serialises reloads (watchers and SIGHUP may race) and remembers the serving serial for the log.
    private let current: Lock<String>

    init(certPath: String, clientCAFile: String?, server: PickerServer, registry: MetricsRegistry, logger: Logger) {
        self.certPath = certPath
        self.clientCAFile = clientCAFile
        self.server = server
        self.logger = logger
        current = Lock(server.initialTLS?.certificateSerial ?? "")
        results = registry.counter("epp_tls_certificate_reloads_total",
                                   "TLS certificate reloads by result (success, error).", labels: ["result"])
        _ = results.labels("success")
        _ = results.labels("error")
    }

    /// Files whose change triggers a reload.
    var watchedPaths: [String] { [certPath + "/tls.crt", certPath + "/tls.key"] + (clientCAFile.map { [$0] } ?? []) }

    /// Reloads now (any thread). Returns true when the new certificate serves new handshakes.
    @discardableResult
    func reload(reason: String) -> Bool {
        current.withLock { serial in
            do {
                let tls = try TLSContext(certDirectory: certPath, clientCAFile: clientCAFile)
                // An unchanged certificate (e.g. both files' events of one rotation) still swaps: cheap and
                // picks up a changed client CA.
                server.replaceTLSContext(tls)
                results.labels("success").increment()
                logger.info("TLS certificate reloaded", metadata: [
                    "reason": "\(reason)", "serial": "\(tls.certificateSerial)", "previous_serial": "\(serial)",
                    "subject": "\(tls.certificateSubject)",
                ])
                serial = tls.certificateSerial
                return true
            } catch {
                results.labels("error").increment()
                logger.error("TLS certificate reload failed; new handshakes keep the previous certificate",
                             metadata: ["reason": "\(reason)", "error": "\(error)", "serial": "\(serial)"])
                return false
            }
        }
    }
}
