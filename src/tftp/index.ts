/** Public surface of the TFTP server for the wiring. */
export { TftpServer, type TftpServerOptions, type TftpStats, type TftpLogger } from './server.js';
export { installLoaders, installChainLoaders, DEBIAN_CHAIN_LOADERS, DEFAULT_LOADERS, DEFAULT_LOADER_SOURCE, type LoaderReport } from './loaders.js';
export { parseGeneratedName, type GenerateFn, type GeneratedRequest, type GeneratedName, type Peer } from './generated.js';
export { tftpGet, TftpClientError, type GetOptions, type GetResult } from './client.js';
