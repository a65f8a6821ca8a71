package vmbox

// cpuid executes CPUID (cpuid_amd64.s).
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// rdtsc reads the time-stamp counter, serialised by LFENCE (cpuid_amd64.s).
func rdtsc() uint64
