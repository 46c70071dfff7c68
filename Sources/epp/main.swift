// The endpoint picker: Envoy ext_proc server that routes each LLM request to a model-server endpoint.
import EPPApp

EPPApp.main(CommandLine.arguments)
