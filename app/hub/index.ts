// Parents on the Hugging Face Hub: the public surface.
export { parseHubRef, isHubRef, hubRefText, HUB_SCHEME, type HubRef } from './hub-ref.ts';
export { openHubFolder, type HubFolder } from './open-hub-folder.ts';
export { DEFAULT_ENDPOINT, type HubOptions, type HubStats } from './hub-client.ts';
