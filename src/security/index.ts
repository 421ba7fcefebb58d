export { NodeTokens, loadOrCreateKey, nodeTokensFor, tokenKeyPath, type VerifyResult, type NodeTokenOptions } from './tokens.js';
export { checkNode, httpAuthorizer, provisiondAuthorizer, type AuthorizeResult, type AuthorizeInput, type AuthorizerOptions } from './authorize.js';
