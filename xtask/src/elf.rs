//! Just enough of an ELF64 little-endian reader to list an eBPF object's programs and maps:
//! a program is a global function outside `.text` (its section, e.g. `classifier` or
//! `cgroup/connect4`, tells its type); a map is an object symbol in `maps` or `.maps`.

use anyhow::{Context as _, bail, ensure};

pub struct Symbol {
    pub name: String,
    pub section: String,
}

pub struct Contents {
    pub programs: Vec<Symbol>,
    pub maps: Vec<Symbol>,
}

struct Section {
    name_offset: u32,
    kind: u32,
    offset: usize,
    size: usize,
    link: u32,
}

const SHT_SYMTAB: u32 = 2;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const STB_GLOBAL: u8 = 1;

impl Contents {
    pub fn parse(elf: &[u8]) -> anyhow::Result<Self> {
        ensure!(elf.get(..4) == Some(b"\x7fELF"), "not an ELF file");
        ensure!(
            elf.get(4) == Some(&2) && elf.get(5) == Some(&1),
            "not ELF64 little-endian"
        );
        let shoff = read_u64(elf, 0x28)?;
        let shentsize = usize::from(read_u16(elf, 0x3a)?);
        let shnum = usize::from(read_u16(elf, 0x3c)?);
        let shstrndx = usize::from(read_u16(elf, 0x3e)?);
        ensure!(shentsize >= 0x40, "bad section header size {shentsize}");

        let sections = (0..shnum)
            .map(|i| {
                let at = shoff + i * shentsize;
                Ok(Section {
                    name_offset: read_u32(elf, at)?,
                    kind: read_u32(elf, at + 4)?,
                    offset: read_u64(elf, at + 0x18)?,
                    size: read_u64(elf, at + 0x20)?,
                    link: read_u32(elf, at + 0x28)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shstr = sections.get(shstrndx).context("no section-name table")?;
        let section_name = |index: usize| -> String {
            sections
                .get(index)
                .and_then(|s| c_str(elf, shstr.offset + s.name_offset as usize))
                .unwrap_or_default()
        };

        let mut contents = Contents {
            programs: Vec::new(),
            maps: Vec::new(),
        };
        let Some(symtab) = sections.iter().find(|s| s.kind == SHT_SYMTAB) else {
            bail!("no symbol table");
        };
        let strtab = sections
            .get(symtab.link as usize)
            .context("no symbol string table")?;
        for at in (symtab.offset..symtab.offset + symtab.size).step_by(24) {
            let name = read_u32(elf, at)? as usize;
            let info = *elf.get(at + 4).context("truncated symbol")?;
            let shndx = usize::from(read_u16(elf, at + 6)?);
            let (kind, bind) = (info & 0xf, info >> 4);
            let section = section_name(shndx);
            let symbol = || Symbol {
                name: c_str(elf, strtab.offset + name).unwrap_or_default(),
                section: section.clone(),
            };
            if kind == STT_FUNC && bind == STB_GLOBAL && section != ".text" {
                contents.programs.push(symbol());
            } else if kind == STT_OBJECT && (section == "maps" || section == ".maps") {
                contents.maps.push(symbol());
            }
        }
        Ok(contents)
    }
}

fn bytes<const N: usize>(elf: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
    elf.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("ELF file truncated at offset {at}"))
}

fn read_u16(elf: &[u8], at: usize) -> anyhow::Result<u16> {
    Ok(u16::from_le_bytes(bytes(elf, at)?))
}

fn read_u32(elf: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(bytes(elf, at)?))
}

fn read_u64(elf: &[u8], at: usize) -> anyhow::Result<usize> {
    let v = u64::from_le_bytes(bytes(elf, at)?);
    usize::try_from(v).context("ELF offset does not fit in usize")
}

fn c_str(elf: &[u8], at: usize) -> Option<String> {
    let tail = elf.get(at..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}
