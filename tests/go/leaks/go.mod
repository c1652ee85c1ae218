module deferscope.test/leaks

go 1.19
