// HF_ENDPOINT at build time (vite.config.ts: envPrefix), as the Hugging Face tools read it.
interface ImportMetaEnv {
  readonly HF_ENDPOINT?: string;
}
