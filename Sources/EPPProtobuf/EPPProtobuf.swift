// EPPProtobuf module
