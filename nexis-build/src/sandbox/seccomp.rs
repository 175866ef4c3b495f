//! The builder's seccomp filter, as classic BPF.
//!
//! Like Nix's sandbox: `chmod`-family calls that would set the setuid or setgid bit fail
//! with `EPERM` (the store never holds such files, and a builder must not be able to hand
//! one to a later build), and `setxattr`-family calls fail with `ENOTSUP` (extended
//! attributes, ACLs and file capabilities are not part of a store path). Everything else
//! is allowed. Calls of a foreign architecture kill the process, except i386 calls on
//! x86-64 (32-bit builds), which get the same rules; x32 calls are refused with `ENOSYS`.

use libc::{
    BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
    SECCOMP_RET_DATA, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, sock_filter,
};

/// `<linux/audit.h>`: `EM_*` | `__AUDIT_ARCH_64BIT` | `__AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 0x3e | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 0x03 | 0x4000_0000;
const AUDIT_ARCH_AARCH64: u32 = 0xb7 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_RISCV64: u32 = 0xf3 | 0x8000_0000 | 0x4000_0000;
/// Set in the syscall number of x32 calls (which arrive with `AUDIT_ARCH_X86_64`).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`: `int nr; __u32 arch; __u64 ip; __u64 args[6];`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// The low 32 bits of argument `i` (little-endian: the first word).
const fn offset_arg(i: u32) -> u32 {
    16 + 8 * i
}

/// What the filter does with a syscall it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The mode is argument `i`: refuse it with `EPERM` when it has setuid or setgid.
    NoSetId(u32),
    /// Always fail with `ENOTSUP`.
    NotSupported,
}

/// The syscalls of one architecture that the filter looks at.
struct Table {
    arch: u32,
    x32_bit: bool,
    rules: &'static [(u32, Rule)],
}

// Numbers from each architecture's syscall table; 452 (fchmodat2) and 463 (setxattrat)
// are the same everywhere, as all syscalls added since 5.1 are.
const X86_64: Table = Table {
    arch: AUDIT_ARCH_X86_64,
    x32_bit: true,
    rules: &[
        (90, Rule::NoSetId(1)),    // chmod
        (91, Rule::NoSetId(1)),    // fchmod
        (268, Rule::NoSetId(2)),   // fchmodat
        (452, Rule::NoSetId(2)),   // fchmodat2
        (188, Rule::NotSupported), // setxattr
        (189, Rule::NotSupported), // lsetxattr
        (190, Rule::NotSupported), // fsetxattr
        (463, Rule::NotSupported), // setxattrat
    ],
};

#[cfg(target_arch = "x86_64")]
const I386: Table = Table {
    arch: AUDIT_ARCH_I386,
    x32_bit: false,
    rules: &[
        (15, Rule::NoSetId(1)),    // chmod
        (94, Rule::NoSetId(1)),    // fchmod
        (306, Rule::NoSetId(2)),   // fchmodat
        (452, Rule::NoSetId(2)),   // fchmodat2
        (226, Rule::NotSupported), // setxattr
        (227, Rule::NotSupported), // lsetxattr
        (228, Rule::NotSupported), // fsetxattr
        (463, Rule::NotSupported), // setxattrat
    ],
};

/// The asm-generic table (aarch64, riscv64): no `chmod`.
const GENERIC_RULES: &[(u32, Rule)] = &[
    (52, Rule::NoSetId(1)),    // fchmod
    (53, Rule::NoSetId(2)),    // fchmodat
    (452, Rule::NoSetId(2)),   // fchmodat2
    (5, Rule::NotSupported),   // setxattr
    (6, Rule::NotSupported),   // lsetxattr
    (7, Rule::NotSupported),   // fsetxattr
    (463, Rule::NotSupported), // setxattrat
];

const AARCH64: Table = Table {
    arch: AUDIT_ARCH_AARCH64,
    x32_bit: false,
    rules: GENERIC_RULES,
};

const RISCV64: Table = Table {
    arch: AUDIT_ARCH_RISCV64,
    x32_bit: false,
    rules: GENERIC_RULES,
};

#[cfg(target_arch = "x86_64")]
const TABLES: &[Table] = &[X86_64, I386];
#[cfg(target_arch = "aarch64")]
const TABLES: &[Table] = &[AARCH64];
#[cfg(target_arch = "riscv64")]
const TABLES: &[Table] = &[RISCV64];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
compile_error!("the build sandbox's seccomp filter knows x86_64, aarch64 and riscv64 only");

// Silence "unused" for the tables of other architectures while keeping them compiled.
const _: [&Table; 3] = [&X86_64, &AARCH64, &RISCV64];

const S_ISUID_OR_S_ISGID: u32 = 0o6000;

#[allow(clippy::cast_possible_truncation)] // BPF opcodes are 16 bits.
fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

#[allow(clippy::cast_possible_truncation)]
fn jump(code: u32, k: u32, jt: usize, jf: usize) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: u8::try_from(jt).expect("the filter's jumps are short"),
        jf: u8::try_from(jf).expect("the filter's jumps are short"),
        k,
    }
}

fn ret(action: u32) -> sock_filter {
    stmt(BPF_RET | BPF_K, action)
}

fn errno(e: i32) -> u32 {
    SECCOMP_RET_ERRNO | (u32::try_from(e).expect("errno values are positive") & SECCOMP_RET_DATA)
}

/// The checks of one architecture, entered with the accumulator holding anything; ends in
/// a return on every path.
fn arch_block(table: &Table) -> Vec<sock_filter> {
    let mut actions: Vec<Rule> = Vec::new();
    for (_, rule) in table.rules {
        if !actions.contains(rule) {
            actions.push(*rule);
        }
    }
    let mut prog = vec![stmt(BPF_LD | BPF_W | BPF_ABS, OFFSET_NR)];
    if table.x32_bit {
        // nr >= X32_SYSCALL_BIT: an x32 call.
        prog.push(jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
        prog.push(ret(errno(libc::ENOSYS)));
    }
    // The comparisons, then "allow", then one target per action.
    let first = prog.len();
    let allow_at = first + table.rules.len();
    let mut target_at = Vec::new();
    let mut at = allow_at + 1;
    for action in &actions {
        target_at.push(at);
        at += match action {
            Rule::NoSetId(_) => 4,
            Rule::NotSupported => 1,
        };
    }
    for (i, (nr, rule)) in table.rules.iter().enumerate() {
        let here = first + i;
        let target = target_at[actions
            .iter()
            .position(|a| a == rule)
            .expect("collected above")];
        prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *nr, target - here - 1, 0));
    }
    prog.push(ret(SECCOMP_RET_ALLOW));
    for action in &actions {
        match action {
            Rule::NoSetId(arg) => {
                prog.push(stmt(BPF_LD | BPF_W | BPF_ABS, offset_arg(*arg)));
                prog.push(jump(BPF_JMP | BPF_JSET | BPF_K, S_ISUID_OR_S_ISGID, 0, 1));
                prog.push(ret(errno(libc::EPERM)));
                prog.push(ret(SECCOMP_RET_ALLOW));
            }
            Rule::NotSupported => prog.push(ret(errno(libc::ENOTSUP))),
        }
    }
    debug_assert_eq!(prog.len(), at);
    prog
}

/// The whole filter for this machine's architecture.
pub(super) fn filter() -> Vec<sock_filter> {
    let mut prog = Vec::new();
    for table in TABLES {
        let block = arch_block(table);
        prog.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFFSET_ARCH));
        prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, table.arch, 0, block.len()));
        prog.extend(block);
    }
    prog.push(ret(SECCOMP_RET_KILL_PROCESS));
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter of the instructions the filter uses, to check its jumps.
    fn eval(prog: &[sock_filter], arch: u32, nr: u32, args: [u32; 6]) -> u32 {
        let load = |off: u32| match off {
            OFFSET_NR => nr,
            OFFSET_ARCH => arch,
            o => args[((o - 16) / 8) as usize],
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            if code == BPF_LD | BPF_W | BPF_ABS {
                acc = load(ins.k);
                pc += 1;
            } else if code == BPF_RET | BPF_K {
                return ins.k;
            } else {
                let taken = if code == BPF_JMP | BPF_JEQ | BPF_K {
                    acc == ins.k
                } else if code == BPF_JMP | BPF_JGE | BPF_K {
                    acc >= ins.k
                } else if code == BPF_JMP | BPF_JSET | BPF_K {
                    acc & ins.k != 0
                } else {
                    panic!("unexpected opcode {code:#x}")
                };
                pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
            }
        }
    }

    #[test]
    fn setuid_chmod_is_refused_and_plain_chmod_allowed() {
        let prog = filter();
        let native = TABLES[0].arch;
        let fchmodat = TABLES[0]
            .rules
            .iter()
            .find(|(_, r)| *r == Rule::NoSetId(2))
            .expect("fchmodat")
            .0;
        let eperm = errno(libc::EPERM);
        assert_eq!(
            eval(&prog, native, fchmodat, [0, 0, 0o4755, 0, 0, 0]),
            eperm
        );
        assert_eq!(
            eval(&prog, native, fchmodat, [0, 0, 0o2755, 0, 0, 0]),
            eperm
        );
        assert_eq!(
            eval(&prog, native, fchmodat, [0, 0, 0o755, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        // fchmod's mode is argument 1.
        let fchmod = TABLES[0]
            .rules
            .iter()
            .find(|(_, r)| *r == Rule::NoSetId(1))
            .expect("fchmod")
            .0;
        assert_eq!(eval(&prog, native, fchmod, [3, 0o4000, 0, 0, 0, 0]), eperm);
        assert_eq!(
            eval(&prog, native, fchmod, [0o4000, 0o644, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        // An unrelated syscall with the bits set in its arguments.
        assert_eq!(eval(&prog, native, 0, [0o6000; 6]), SECCOMP_RET_ALLOW);
    }

    #[test]
    fn xattrs_are_not_supported_and_foreign_arches_are_killed() {
        let prog = filter();
        let native = TABLES[0].arch;
        for (nr, rule) in TABLES[0].rules {
            if *rule == Rule::NotSupported {
                assert_eq!(eval(&prog, native, *nr, [0; 6]), errno(libc::ENOTSUP));
            }
        }
        assert_eq!(eval(&prog, 0x1234, 0, [0; 6]), SECCOMP_RET_KILL_PROCESS);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_is_refused_and_i386_gets_the_same_rules() {
        let prog = filter();
        assert_eq!(
            eval(&prog, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT + 90, [0; 6]),
            errno(libc::ENOSYS)
        );
        assert_eq!(
            eval(&prog, AUDIT_ARCH_I386, 15, [0, 0o4755, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
        assert_eq!(
            eval(&prog, AUDIT_ARCH_I386, 228, [0; 6]),
            errno(libc::ENOTSUP)
        );
        assert_eq!(eval(&prog, AUDIT_ARCH_I386, 1, [0; 6]), SECCOMP_RET_ALLOW);
    }
}
