// Package fileio is the one place graft writes files. Every output follows
// one rule, so that writing a result never destroys what it must not:
//
//  1. A new file is created whole: written to a temporary file in the same
//     folder, flushed to disk and renamed into place, with mode 0644 (less
//     the umask). A reader sees the old file or the new one, never a part.
//  2. An existing regular file is replaced the same way, atomically, keeping
//     its permission bits and, when graft runs as root, its owner and group
//     (best effort). Other hard links to it keep the old content.
//  3. An existing file with no write permission bit (such as mode 0444) is
//     refused ("... is read-only") unless the write is forced (Force).
//  4. A symlink is written through: the link stays a link and the file it
//     points to is replaced by rules 2 and 3, its temporary file beside it.
//     A dangling symlink is refused.
//  5. Anything else (a character or block device, a named pipe, a socket, a
//     folder) is refused without being opened: "output /dev/null is a
//     character device, not a regular file".
//  6. A failed or refused write leaves no temporary file. Temporary files
//     are named .NAME.graft-tmp-RANDOM; those a killed run left behind are
//     removed by the next write into the same folder, once no live process
//     holds them (on Unix; elsewhere they are left, and ignored).
//
// Around the rule:
//
//   - A Plan lists what a command reads and writes, and Check refuses, before
//     any work, an output that cannot be written under the rule, an output
//     that is one of the command's inputs (the same path, or the same file
//     through a symlink or a hard link) unless that output is forced, an
//     output inside a folder the command reads (forced or not: graft never
//     writes into a folder it is reading), and two outputs that are the
//     same file.
//   - LockDir makes a run the only graft run writing into a folder; a second
//     run fails at once ("another graft run (pid N) is writing to DIR"). The
//     lock is released when the run ends, however it ends.
//   - BeginSet and CurrentSet commit files that belong together (a training
//     checkpoint) as one unit: a kill at any instant leaves either the old
//     complete set or the new one.
//   - InFolder makes writers that replace several files of one folder
//     together (a model and its data file, in onnx.Save) take turns.
package fileio
