export { BootService, BootError, bootServiceFor, storeBootBackend, defaultTemplateDirs, repoTemplatesDir, type BootBackend, type Rendered, type BootServiceOptions } from './service.js';
export { decideBoot, buildContext, type BootDecision, type BootContext, type Decision, type ServerInfo } from './decide.js';
export { TemplateStore, TemplateError, templateCandidates, describeHandlebarsError, type TemplateKind, type TemplateSelector } from './templates.js';
export { bootParts, type BootParts } from './wiring.js';
