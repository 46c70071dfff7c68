// EPPEventLoop module
