/** The stand-in Hub's port for the studio tests (e2e/hub.spec.ts); the build points HF_ENDPOINT at it. */
export const HUB_PORT = Number(process.env.HUB_PORT ?? 4320);
