// Parts of the File System Access API that Chromium ships and TypeScript's DOM lib lacks.

type FileSystemPermissionMode = 'read' | 'readwrite';

interface FileSystemHandle {
  queryPermission?(descriptor?: { mode?: FileSystemPermissionMode }): Promise<PermissionState>;
  requestPermission?(descriptor?: { mode?: FileSystemPermissionMode }): Promise<PermissionState>;
}

interface DirectoryPickerOptions {
  id?: string;
  mode?: FileSystemPermissionMode;
  startIn?: FileSystemHandle | 'desktop' | 'documents' | 'downloads' | 'music' | 'pictures' | 'videos';
}

interface Window {
  showDirectoryPicker?(options?: DirectoryPickerOptions): Promise<FileSystemDirectoryHandle>;
}

interface DataTransferItem {
  getAsFileSystemHandle?(): Promise<FileSystemHandle | null>;
}
